"""What the torch background-removal loaders (BEN2, RMBG-1.4) share: the network on the device at its
dtype, its measured memory, and the working size a checkpoint's ``config.json`` may name."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

from model_registry.backends import LoadedModel
from model_registry.loaders._memory import measured_load, module_bytes
from model_registry.loaders._park import ModuleParker
from model_registry.spec import ModelSpec

__all__ = ("load_matting_network",)


def load_matting_network(spec: ModelSpec, path: Path, device: str, build: Callable, dtype, working_size: int) -> LoadedModel:
    """``build(path)`` makes the network on the CPU; ``working_size`` is its training resolution."""
    import torch

    with measured_load(device) as measured:
        network = build(path).to(device=device, dtype=dtype).eval()
    memory = measured["cuda_bytes"] or module_bytes(network)
    folder = path if path.is_dir() else path.parent
    # The hub's config.json holds only upstream's constructor arguments; a test checkpoint's may name a
    # smaller working size than the one the released weights were trained at.
    config = json.loads((folder / "config.json").read_text()) if (folder / "config.json").is_file() else {}
    return LoadedModel(
        spec=spec,
        handle=network,
        device=device,
        # The row's figure adds the activations at the working size to the weights.
        memory_bytes=max(memory, spec.vram_bytes),
        precision={torch.float16: "fp16", torch.bfloat16: "bf16"}.get(dtype, "fp32"),
        parker=ModuleParker(network),
        extras={"weights_path": str(path), "working_size": int(config.get("working_size", working_size))},
    )
