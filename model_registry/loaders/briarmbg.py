"""BRIA RMBG-1.4 background removal from the released ``model.safetensors`` (or ``model.pth``)."""

from __future__ import annotations

from pathlib import Path

from model_registry.backends import LoadedModel
from model_registry.loaders._matting import load_matting_network
from model_registry.spec import ModelSpec

__all__ = ("load",)


def load(spec: ModelSpec, path: Path, device: str) -> LoadedModel:
    import torch

    from model_registry.networks.briarmbg import WORKING_SIZE, load_briarmbg

    half = device.startswith("cuda") and spec.quantization in ("fp16", "bf16")
    dtype = (torch.bfloat16 if spec.quantization == "bf16" else torch.float16) if half else torch.float32
    return load_matting_network(spec, path, device, load_briarmbg, dtype, working_size=WORKING_SIZE)
