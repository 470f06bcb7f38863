"""What lets drylocal's NF4 path run on a CPU for tests and benchmarks: the loader is asked for the options
it chooses on a GPU (its own NF4 quantization config and dtype, unchanged), and diffusers' two GPU-only
assumptions about bitsandbytes (an environment check and a default device) are lifted. bitsandbytes itself
runs NF4 on the CPU; on a GPU none of this is needed."""

from __future__ import annotations

from typing import Any

__all__ = ("nf4_patches",)


def _decided_as_on_a_gpu(decide):
    """The loader's own precision decision, taken for a GPU while the weights stay on the CPU."""

    def options(spec, device: str, encoders: tuple[str, ...] = ()) -> tuple[dict, str]:
        return decide(spec, "cuda", encoders)

    return options


def nf4_patches() -> list[tuple[Any, str, Any]]:
    """(owner, attribute, replacement) triples, for monkeypatch.setattr or plain setattr."""
    from diffusers.quantizers.bitsandbytes.bnb_quantizer import BnB4BitDiffusersQuantizer

    from model_registry.loaders import diffusers as loader

    return [
        (loader, "_options", _decided_as_on_a_gpu(loader._options)),
        (BnB4BitDiffusersQuantizer, "validate_environment", lambda self, *a, **k: None),
        (BnB4BitDiffusersQuantizer, "update_device_map", lambda self, device_map: device_map or {"": "cpu"}),
    ]
