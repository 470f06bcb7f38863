"""BRIA RMBG-1.4 background removal from the released ``model.safetensors`` (or ``model.pth``)."""

from __future__ import annotations

import json
from pathlib import Path

from model_registry.backends import LoadedModel
from model_registry.loaders._memory import measured_load, module_bytes
from model_registry.spec import ModelSpec

__all__ = ("load",)


def load(spec: ModelSpec, path: Path, device: str) -> LoadedModel:
    import torch

    from model_registry.networks.briarmbg import WORKING_SIZE, load_briarmbg

    half = device.startswith("cuda") and spec.quantization in ("fp16", "bf16")
    dtype = (torch.bfloat16 if spec.quantization == "bf16" else torch.float16) if half else torch.float32
    with measured_load(device) as measured:
        network = load_briarmbg(path).to(device=device, dtype=dtype).eval()
    memory = measured["cuda_bytes"] or module_bytes(network)
    folder = path if path.is_dir() else path.parent
    # The hub's config.json holds only upstream's constructor arguments; a test checkpoint's may name
    # a smaller working size than the 1024 px the released weights were trained at.
    config = json.loads((folder / "config.json").read_text()) if (folder / "config.json").is_file() else {}

    return LoadedModel(
        spec=spec,
        handle=network,
        device=device,
        memory_bytes=max(memory, spec.vram_bytes),
        precision={torch.float16: "fp16", torch.bfloat16: "bf16"}.get(dtype, "fp32"),
        extras={"weights_path": str(path), "working_size": int(config.get("working_size", WORKING_SIZE))},
    )
