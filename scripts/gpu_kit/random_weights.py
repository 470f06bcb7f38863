"""The check's one stand-in: weight files that describe their tensors instead of holding them.

A folder prepared for the check has the real checkpoint's layout (model_index.json, each component's
config.json, tokenizers, sharded ``*.safetensors`` with their index), but each weight file holds only a JSON
list of the tensors it stands for: name, shape, stored dtype. While :func:`random_weights` is active, the
readers that load a safetensors file (diffusers' ``load_state_dict``, transformers' ``safe_open``, and
``safetensors.torch.load_file``, which this project's own loaders call) hand back random tensors of those shapes
instead, generated on the GPU where there is one and
landing in host RAM as a file read would. Everything after the read is the libraries' and drylocal's own code:
dtype casts, bitsandbytes quantizing bf16 weights into NF4/INT8, fp8 layerwise casting, placement, pipelines.

So a 40 GB checkpoint costs a few kilobytes of disk. The values are scaled like a freshly initialised network
(1/sqrt(fan-in), norms at one, biases at zero) so that activations stay finite through every block.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import math
from pathlib import Path
from typing import Any, Iterator, Mapping

__all__ = (
    "MAGIC",
    "TensorInfo",
    "describe_module",
    "describe_safetensors",
    "is_placeholder",
    "placeholder_tensors",
    "random_tensor",
    "random_weights",
    "write_checkpoint",
    "write_placeholder",
)

MAGIC = b'{"drylocal_random_weights": 1'
"""How a placeholder starts: nothing a real safetensors file (an 8-byte header length) can begin with."""

SHARD_BYTES = 2_000_000_000
"""Nominal shard size, as the hub's checkpoints are cut: diffusers and transformers load shard by shard."""

TensorInfo = tuple[list[int], str]
"""(shape, safetensors dtype name: ``F32``, ``BF16``, ``I64``, ...)."""

_DTYPES = {
    "F64": "float64", "F32": "float32", "F16": "float16", "BF16": "bfloat16", "F8_E4M3": "float8_e4m3fn",
    "I64": "int64", "I32": "int32", "I16": "int16", "I8": "int8", "U8": "uint8", "BOOL": "bool",
}


def _torch_dtype(name: str):
    import torch

    return getattr(torch, _DTYPES[name])


def _dtype_name(dtype) -> str:
    wanted = str(dtype).removeprefix("torch.")
    return next(k for k, v in _DTYPES.items() if v == wanted)


def element_size(name: str) -> int:
    return {"F64": 8, "I64": 8, "F32": 4, "I32": 4, "F16": 2, "BF16": 2, "I16": 2}.get(name, 1)


# ------------------------------------------------------------------ the files


def write_placeholder(path: Path, tensors: Mapping[str, TensorInfo]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    body = {name: [list(shape), dtype] for name, (shape, dtype) in tensors.items()}
    path.write_bytes(MAGIC + b', "tensors": ' + json.dumps(body).encode() + b"}")
    return path


def is_placeholder(path: str | Path) -> bool:
    try:
        with open(path, "rb") as file:
            return file.read(len(MAGIC)) == MAGIC
    except OSError:
        return False


def placeholder_tensors(path: str | Path) -> dict[str, TensorInfo]:
    data = json.loads(Path(path).read_bytes())
    return {name: (shape, dtype) for name, (shape, dtype) in data["tensors"].items()}


def describe_safetensors(path: Path) -> dict[str, TensorInfo]:
    """The tensors a real safetensors file holds, read from its header alone."""
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as file:
        return {name: (list(file.get_slice(name).get_shape()), file.get_slice(name).get_dtype()) for name in file.keys()}


def describe_module(module, float_dtype: str | None = "BF16") -> dict[str, TensorInfo]:
    """A network's checkpoint as the hub would store it: its state dict (tied tensors once), floating-point
    tensors at ``float_dtype`` (None: as the module holds them). Works on the meta device."""
    seen: set[int] = set()
    tensors: dict[str, TensorInfo] = {}
    for name, tensor in module.state_dict(keep_vars=True).items():
        if id(tensor) in seen:
            continue
        seen.add(id(tensor))
        dtype = float_dtype if tensor.is_floating_point() and float_dtype else _dtype_name(tensor.dtype)
        tensors[name] = (list(tensor.shape), dtype)
    return tensors


def write_checkpoint(folder: Path, tensors: Mapping[str, TensorInfo], weights_name: str) -> list[Path]:
    """Placeholders for a checkpoint named ``weights_name`` (``model.safetensors``,
    ``diffusion_pytorch_model.safetensors``): one file, or shards and their index as the libraries write them."""
    folder.mkdir(parents=True, exist_ok=True)
    shards: list[dict[str, TensorInfo]] = [{}]
    size = 0
    for name, (shape, dtype) in tensors.items():
        nbytes = math.prod(shape) * element_size(dtype)
        if shards[-1] and size + nbytes > SHARD_BYTES:
            shards.append({})
            size = 0
        shards[-1][name] = (shape, dtype)
        size += nbytes
    if len(shards) == 1:
        return [write_placeholder(folder / weights_name, shards[0])]
    stem, _, suffix = weights_name.rpartition(".")
    names = [f"{stem}-{i + 1:05d}-of-{len(shards):05d}.{suffix}" for i in range(len(shards))]
    total = sum(math.prod(s) * element_size(d) for s, d in tensors.values())
    index = {"metadata": {"total_size": total}, "weight_map": {k: n for n, shard in zip(names, shards) for k in shard}}
    (folder / f"{weights_name}.index.json").write_text(json.dumps(index, indent=1))
    return [write_placeholder(folder / n, shard) for n, shard in zip(names, shards)]


# ------------------------------------------------------------------ the values


def _source_device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def random_tensor(name: str, shape: list[int], dtype_name: str, device: str | None = None):
    """A tensor as a fresh network would hold it, in host RAM: generated on ``device`` (the GPU where there is
    one, which is fast), then copied to the CPU, where a file read would have put it."""
    import torch

    dtype = _torch_dtype(dtype_name)
    device = device or _source_device()
    leaf = name.rsplit(".", 1)[-1].lower()
    if not dtype.is_floating_point:
        # Persistent integer buffers are indices (position ids): counting up is what their __init__ does.
        value = torch.arange(math.prod(shape), device=device).reshape(shape) % max(1, shape[-1] if shape else 1)
        return value.to(dtype).cpu()
    generate = torch.float32 if dtype.itemsize == 1 else dtype  # float8 cannot be sampled directly
    if len(shape) <= 1:
        one = any(word in leaf for word in ("weight", "scale", "gamma", "std")) and "bias" not in leaf
        value = torch.full(shape, 1.0 if one else 0.0, dtype=generate, device=device)
    else:
        fan_in = math.prod(shape[1:])
        value = torch.randn(shape, dtype=generate, device=device) / math.sqrt(max(1, fan_in))
    return value.to(dtype).cpu()


class RandomSlice:
    """What transformers takes from ``safe_open(...).get_slice(name)``: a tensor made when it is indexed."""

    def __init__(self, name: str, info: TensorInfo) -> None:
        self.name, (self.shape, self.dtype) = name, info

    def get_shape(self) -> list[int]:
        return list(self.shape)

    def get_dtype(self) -> str:
        return self.dtype

    def __getitem__(self, index):
        return random_tensor(self.name, self.shape, self.dtype)[index]


class _RandomFile:
    """A placeholder opened as ``safetensors.safe_open`` opens a file."""

    def __init__(self, path: str) -> None:
        self.tensors = placeholder_tensors(path)

    def keys(self) -> list[str]:
        return list(self.tensors)

    def metadata(self) -> dict[str, str]:
        return {"format": "pt"}

    def get_slice(self, name: str) -> RandomSlice:
        return RandomSlice(name, self.tensors[name])

    def get_tensor(self, name: str):
        return random_tensor(name, *self.tensors[name])

    def __enter__(self) -> "_RandomFile":
        return self

    def __exit__(self, *exc: Any) -> None:
        pass


def _random_state_dict(path: str) -> dict[str, Any]:
    return {name: random_tensor(name, shape, dtype) for name, (shape, dtype) in placeholder_tensors(path).items()}


# ------------------------------------------------------------------ the patches

_BOUND_LOAD_FILE = ("model_registry.networks.qwen3_tts.codec",)
"""This project's modules that import ``safetensors.torch.load_file`` by name at their top."""



@contextlib.contextmanager
def random_weights() -> Iterator[None]:
    """Placeholders read as random weights by diffusers and transformers; real files read as usual."""
    import diffusers.models.model_loading_utils as diffusers_loading
    import diffusers.models.modeling_utils as diffusers_modeling
    import safetensors.torch
    import transformers.modeling_utils as transformers_modeling

    real_diffusers = diffusers_loading.load_state_dict
    real_safe_open = transformers_modeling.safe_open
    real_transformers = transformers_modeling.load_state_dict
    real_load_file = safetensors.torch.load_file

    def diffusers_read(checkpoint_file, *args, **kwargs):
        if not isinstance(checkpoint_file, dict) and is_placeholder(checkpoint_file):
            return _random_state_dict(str(checkpoint_file))
        return real_diffusers(checkpoint_file, *args, **kwargs)

    def transformers_open(path, *args, **kwargs):
        return _RandomFile(str(path)) if is_placeholder(path) else real_safe_open(path, *args, **kwargs)

    def transformers_read(checkpoint_file, *args, **kwargs):
        if is_placeholder(checkpoint_file):
            return _random_state_dict(str(checkpoint_file))
        return real_transformers(checkpoint_file, *args, **kwargs)

    def load_file(filename, *args, **kwargs):
        if is_placeholder(filename):
            return _random_state_dict(str(filename))
        return real_load_file(filename, *args, **kwargs)

    patches = [
        (diffusers_loading, "load_state_dict", diffusers_read),
        (diffusers_modeling, "load_state_dict", diffusers_read),
        (transformers_modeling, "safe_open", transformers_open),
        (transformers_modeling, "load_state_dict", transformers_read),
        (safetensors.torch, "load_file", load_file),
    ]
    # Modules that bound ``load_file`` at their import read through it too.
    for name in _BOUND_LOAD_FILE:
        module = importlib.import_module(name)
        if getattr(module, "load_file", None) is real_load_file:
            patches.append((module, "load_file", load_file))
    saved = [(owner, name, getattr(owner, name)) for owner, name, _ in patches]
    for owner, name, replacement in patches:
        setattr(owner, name, replacement)
    try:
        yield
    finally:
        for owner, name, original in saved:
            setattr(owner, name, original)
