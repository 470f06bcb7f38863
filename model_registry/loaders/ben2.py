"""BEN2 background removal from the official checkpoint (``BEN2_Base.pth`` or ``model.safetensors``)."""

from __future__ import annotations

from pathlib import Path

from model_registry.backends import LoadedModel
from model_registry.loaders._matting import load_matting_network
from model_registry.spec import ModelSpec

__all__ = ("load",)


def load(spec: ModelSpec, path: Path, device: str) -> LoadedModel:
    import torch

    from model_registry.networks.ben2 import load_ben2

    # The Swin backbone's attention is sensitive to fp16 overflow; bf16 keeps fp32's range on a GPU.
    dtype = torch.bfloat16 if device.startswith("cuda") and spec.quantization in ("bf16", "fp16") else torch.float32
    # BEN2 was trained at 1024x1024.
    return load_matting_network(spec, path, device, load_ben2, dtype, working_size=1024)
