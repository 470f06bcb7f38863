"""Real-ESRGAN's RRDBNet from an official ``.pth`` (basicsr key names, weights under ``params_ema``).

The network is small (67 MB in fp32); what costs memory is the 4x-upscaled activations. So the
model reserves its whole catalog estimate and the upscaler sizes its tiles to the part of that
reserve the weights leave free: a large input takes more tiles, never more memory.
"""

from __future__ import annotations

from pathlib import Path

from model_registry.backends import LoadedModel
from model_registry.loaders._memory import measured_load, module_bytes
from model_registry.loaders._park import ModuleParker
from model_registry.spec import ModelSpec

__all__ = ("load",)


def load(spec: ModelSpec, path: Path, device: str) -> LoadedModel:
    import torch

    from model_registry.networks.rrdbnet import load_rrdbnet

    half = device.startswith("cuda") and spec.quantization in ("fp16", "bf16")
    dtype = (torch.bfloat16 if spec.quantization == "bf16" else torch.float16) if half else torch.float32
    with measured_load(device) as measured:
        network = load_rrdbnet(path).to(device=device, dtype=dtype).eval()
    weights = measured["cuda_bytes"] or module_bytes(network)
    reserve = max(weights, spec.vram_bytes)

    return LoadedModel(
        spec=spec,
        handle=network,
        device=device,
        memory_bytes=reserve,
        precision="fp16" if dtype == torch.float16 else "bf16" if dtype == torch.bfloat16 else "fp32",
        parker=ModuleParker(network),
        extras={"working_bytes": reserve - weights, "scale": network.scale, "weights_path": str(path)},
    )
