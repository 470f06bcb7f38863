"""What lets drylocal's NF4 path run on a CPU for tests and benchmarks: the loader's GPU options, and
diffusers' two GPU-only assumptions about bitsandbytes (an environment check and a default device)
lifted. bitsandbytes itself runs NF4 on the CPU; on a GPU none of this is needed."""

from __future__ import annotations

from typing import Any

__all__ = ("nf4_patches",)


def _gpu_options(spec, device: str) -> tuple[dict, str]:
    import torch
    from diffusers import PipelineQuantizationConfig

    config = PipelineQuantizationConfig(
        quant_backend="bitsandbytes_4bit",
        quant_kwargs={"load_in_4bit": True, "bnb_4bit_quant_type": "nf4", "bnb_4bit_compute_dtype": torch.float32},
        components_to_quantize=["transformer"],
    )
    return {"dtype": torch.float32, "quantization_config": config}, "nf4"


def nf4_patches() -> list[tuple[Any, str, Any]]:
    """(owner, attribute, replacement) triples, for monkeypatch.setattr or plain setattr."""
    from diffusers.quantizers.bitsandbytes.bnb_quantizer import BnB4BitDiffusersQuantizer

    from model_registry.loaders import diffusers as loader

    return [
        (loader, "_options", _gpu_options),
        (BnB4BitDiffusersQuantizer, "validate_environment", lambda self, *a, **k: None),
        (BnB4BitDiffusersQuantizer, "update_device_map", lambda self, device_map: device_map or {"": "cpu"}),
    ]
