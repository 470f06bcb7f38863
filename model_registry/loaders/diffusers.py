"""diffusers pipelines (FLUX.1, FLUX.2 klein, Z-Image, Qwen-Image-Edit, ...) from a diffusers folder.

The folder's model_index.json names the pipeline class, so one loader serves every family. On a GPU
the transformer is quantized as the slug says, through diffusers' own bitsandbytes config; the rest
runs in bf16. On the CPU everything is float32: bitsandbytes and bf16 kernels do not pay off there.
Placed as the worker's placement says (loaders/_offload.py): whole on the GPU, or offloaded by component, by
group or by layer; ``extras["placement"]`` records it. Resident on a GPU, each component is read from disk
straight onto it (``device_map``), one after the other, so host RAM never holds the whole model (a 19B model on
a 32 GB desktop); a component stored in float8 is read in RAM, cast there and moved alone, so the GPU never holds
it in 16 bits. Offloaded, the weights live in RAM anyway: the pipeline is read there and then placed.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from model_registry.backends import LoadedModel
from model_registry.loaders._memory import measured_load, module_bytes
from model_registry.loaders._offload import apply_placement
from model_registry.loaders._park import KeptParker, ModuleParker
from model_registry.placement import Placement
from model_registry.spec import ModelSpec

__all__ = ("load", "pipeline_memory")


def _options(spec: ModelSpec, device: str, encoders: tuple[str, ...] = ()) -> tuple[dict, str]:
    """``encoders``: text encoders quantized as the slug's transformer is (the placement's
    ``quantized_encoders``); bitsandbytes does NF4/INT8 at load, FP8 storage is cast after it (_cast_to_fp8)."""
    import torch

    if not device.startswith("cuda"):
        return {"dtype": torch.float32}, "fp32"
    options: dict = {"dtype": torch.float16 if spec.quantization == "fp16" else torch.bfloat16}
    if spec.quantization in ("nf4", "int8"):
        from diffusers import PipelineQuantizationConfig

        if spec.quantization == "nf4":
            config = PipelineQuantizationConfig(
                quant_backend="bitsandbytes_4bit",
                quant_kwargs={"load_in_4bit": True, "bnb_4bit_quant_type": "nf4", "bnb_4bit_compute_dtype": torch.bfloat16},
                components_to_quantize=["transformer", *encoders],
            )
        else:
            config = PipelineQuantizationConfig(
                quant_backend="bitsandbytes_8bit",
                quant_kwargs={"load_in_8bit": True},
                components_to_quantize=["transformer", *encoders],
            )
        options["quantization_config"] = config
    return options, spec.quantization if spec.quantization in ("nf4", "int8", "fp16") else "bf16"


def _cast_to_fp8(pipe, names: tuple[str, ...]) -> None:
    """Weights stored in float8, computed in bf16: diffusers' layerwise casting halves their memory. A text
    encoder (a transformers model) takes the same hook through diffusers.hooks."""
    for name in names:
        _cast_module_to_fp8(getattr(pipe, name))


def _cast_module_to_fp8(module) -> None:
    import torch
    from diffusers import hooks

    if hasattr(module, "enable_layerwise_casting"):
        module.enable_layerwise_casting(storage_dtype=torch.float8_e4m3fn, compute_dtype=torch.bfloat16)
    else:
        hooks.apply_layerwise_casting(module, storage_dtype=torch.float8_e4m3fn, compute_dtype=torch.bfloat16)


def _current_cuda_device(device: str):
    """``device_map="cuda"`` means the current CUDA device: make it the budget's own (``cuda:N``)."""
    from contextlib import nullcontext

    import torch

    index = torch.device(device).index if device.startswith("cuda") else None
    return torch.cuda.device(index) if index is not None else nullcontext()


def _resident_on_gpu(device: str, placement: Placement | None) -> bool:
    return device.startswith("cuda") and (placement is None or placement.kind == "resident")


def _component_class(path: Path, name: str):
    import importlib
    import json

    library, class_name = json.loads((path / "model_index.json").read_text())[name]
    return getattr(importlib.import_module(library), class_name)


def _to_device(module, device: str):
    return module.to(device)


def _read_cast_moved(path: Path, names: tuple[str, ...], dtype, device: str) -> dict:
    """The float8-stored components, each read in RAM, cast there and moved to ``device`` before the next."""
    import torch

    components = {}
    for name in names:
        module = _component_class(path, name).from_pretrained(str(path / name), dtype=dtype, local_files_only=True)
        _cast_module_to_fp8(module)
        components[name] = _to_device(module, device)
        del module
        if torch.cuda.is_available():
            torch.cuda.empty_cache()  # the cast's 16-bit copies, before the next component is read
    return components


def _processor_override(path: Path) -> dict:
    """Qwen-Image-Edit's Qwen2-VL processor needs torchvision; without it, load the image-only one."""
    import json

    index = json.loads((path / "model_index.json").read_text()) if (path / "model_index.json").is_file() else {}
    entry = index.get("processor") or [None, None]
    if not (entry[1] or "").startswith("Qwen2") or not (path / "processor").is_dir():
        return {}
    from model_registry.loaders._qwen_vl import ImageTextProcessor, needs_torchvision_free_processor

    if not needs_torchvision_free_processor():
        return {}
    return {"processor": ImageTextProcessor.from_pretrained(path / "processor")}


def pipeline_memory(pipe) -> int:
    import torch

    return sum(module_bytes(c) for c in pipe.components.values() if isinstance(c, torch.nn.Module))


def _prequantized(options: dict, cache_dir: Path | None, quantization: str) -> Path | None:
    """Where this model's quantized transformer is (or will be) kept, when it is quantized at load."""
    if cache_dir is None or "quantization_config" not in options:
        return None
    return cache_dir / f"{quantization}-transformer"


def _use_prequantized(options: dict, folder: Path) -> dict:
    """Load the saved quantized transformer as is (its config carries the quantization) and give it to
    the pipeline, which then quantizes only the text encoders the placement names (not kept: they are
    quantized again at each load)."""
    from diffusers import AutoModel, PipelineQuantizationConfig

    transformer = AutoModel.from_pretrained(str(folder), dtype=options["dtype"], local_files_only=True)
    rest = {k: v for k, v in options.items() if k != "quantization_config"}
    config = options["quantization_config"]
    encoders = [name for name in config.components_to_quantize if name != "transformer"]
    if encoders:
        rest["quantization_config"] = PipelineQuantizationConfig(
            quant_backend=config.quant_backend, quant_kwargs=config.quant_kwargs, components_to_quantize=encoders
        )
    return {**rest, "transformer": transformer}


def _save_prequantized(pipe, folder: Path) -> None:
    """Written beside, then renamed: a crash mid-save never leaves a half checkpoint to load."""
    partial = folder.with_name(folder.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    pipe.transformer.save_pretrained(str(partial))
    shutil.rmtree(folder, ignore_errors=True)
    partial.rename(folder)


def _parker(pipe, options: dict, placement: Placement | None, device: str):
    """An offloaded pipeline's weights already live in RAM: parked as it is. A resident one moves to the CPU
    and back, unless bitsandbytes quantized its transformer (such modules cannot move with ``.to()``)."""
    import torch

    if placement is not None and placement.offloaded and device.startswith("cuda"):
        return KeptParker(pipeline_memory(pipe))
    if "quantization_config" in options or _bitsandbytes(pipe):
        return None
    return ModuleParker(*(c for c in pipe.components.values() if isinstance(c, torch.nn.Module)))


def _bitsandbytes(pipe) -> bool:
    transformer = getattr(pipe, "transformer", None)
    config = getattr(getattr(transformer, "config", None), "quantization_config", None)
    return config is not None or getattr(transformer, "is_quantized", False) is True


def load(
    spec: ModelSpec, path: Path, device: str, cache_dir: Path | None = None, placement: Placement | None = None
) -> LoadedModel:
    """``cache_dir``: where the first load of an NF4/INT8 model keeps its quantized transformer, so later
    loads read it instead of quantizing the full-precision weights again. ``placement``: how the pipeline
    sits on ``device`` (None: resident)."""
    from diffusers import DiffusionPipeline
    from diffusers.utils import logging as diffusers_logging

    diffusers_logging.disable_progress_bar()
    encoders = placement.quantized_encoders if placement is not None and device.startswith("cuda") else ()
    options, precision = _options(spec, device, encoders)
    options.update(_processor_override(path))
    prequantized = _prequantized(options, cache_dir, spec.quantization)
    reused = prequantized is not None and (prequantized / "config.json").is_file()
    if reused:
        options = _use_prequantized(options, prequantized)
    fp8 = ("transformer", *encoders) if spec.quantization == "fp8" and device.startswith("cuda") else ()
    resident = _resident_on_gpu(device, placement)
    with measured_load(device) as measured, _current_cuda_device(device if resident else "cpu"):
        if resident:
            options.update(_read_cast_moved(path, fp8, options["dtype"], device), device_map="cuda")
        pipe = DiffusionPipeline.from_pretrained(str(path), local_files_only=True, **options)
        if prequantized is not None and not reused and hasattr(pipe, "transformer"):
            _save_prequantized(pipe, prequantized)
        if fp8 and hasattr(pipe, "transformer"):
            if not resident:
                _cast_to_fp8(pipe, fp8)
            precision = "fp8"
        apply_placement(pipe, placement, device)
    pipe.set_progress_bar_config(disable=True)
    # Offloaded, the measure is what stays on the GPU between jobs (little); the worker plans with the placement.
    memory = measured["cuda_bytes"] if measured["cuda_bytes"] is not None else pipeline_memory(pipe)

    return LoadedModel(
        spec=spec,
        handle=pipe,
        device=device,
        memory_bytes=memory,
        precision=precision,
        parker=_parker(pipe, options, placement, device),
        extras={
            "pipeline_class": type(pipe).__name__,
            "weights_path": str(path),
            "prequantized": reused,
            "placement": placement,
            "quantized_encoders": encoders,
        },
    )
