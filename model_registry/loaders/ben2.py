"""BEN2 background removal from the official checkpoint (``BEN2_Base.pth`` or ``model.safetensors``)."""

from __future__ import annotations

import json
from pathlib import Path

from model_registry.backends import LoadedModel
from model_registry.loaders._memory import measured_load, module_bytes
from model_registry.spec import ModelSpec

__all__ = ("load",)


def load(spec: ModelSpec, path: Path, device: str) -> LoadedModel:
    import torch

    from model_registry.networks.ben2 import load_ben2

    # The Swin backbone's attention is sensitive to fp16 overflow; bf16 keeps fp32's range on a GPU.
    dtype = torch.bfloat16 if device.startswith("cuda") and spec.quantization in ("bf16", "fp16") else torch.float32
    with measured_load(device) as measured:
        network = load_ben2(path).to(device=device, dtype=dtype).eval()
    memory = measured["cuda_bytes"] or module_bytes(network)
    folder = path if path.is_dir() else path.parent
    config = json.loads((folder / "config.json").read_text()) if (folder / "config.json").is_file() else {}

    return LoadedModel(
        spec=spec,
        handle=network,
        device=device,
        memory_bytes=max(memory, spec.vram_bytes),
        precision="bf16" if dtype == torch.bfloat16 else "fp32",
        # BEN2 was trained at 1024x1024; a checkpoint's config may name another working size.
        extras={"weights_path": str(path), "working_size": int(config.get("working_size", 1024))},
    )
