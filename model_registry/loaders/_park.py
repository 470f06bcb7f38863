"""Parking torch modules in host RAM and taking them back (model_registry/backends.py's ``Parker``).

Parked weights are pinned where CUDA is present, so taking them back is a fast host-to-device copy; nothing
is read from disk or quantized again. bitsandbytes-quantized modules cannot move with ``.to()``: their
loaders set no parker, and such a model is dropped when evicted.
"""

from __future__ import annotations

from model_registry.loaders._memory import module_bytes

__all__ = ("KeptParker", "ModuleParker")


class ModuleParker:
    """Moves ``modules`` to the CPU and back to the device."""

    def __init__(self, *modules) -> None:
        self.modules = modules
        self.host_bytes = sum(module_bytes(module) for module in modules)

    def park(self) -> None:
        import torch

        for module in self.modules:
            module.to("cpu")
            if torch.cuda.is_available():
                _pin(module)

    def unpark(self, device: str) -> None:
        import torch

        for module in self.modules:
            module.to(device, non_blocking=True)
        if device.startswith("cuda"):
            torch.cuda.synchronize(device)


class KeptParker:
    """A model whose weights already live in host RAM (an offloaded pipeline): parked as it is."""

    def __init__(self, host_bytes: int) -> None:
        self.host_bytes = host_bytes

    def park(self) -> None:
        pass

    def unpark(self, device: str) -> None:
        pass


def _pin(module) -> None:
    """Page-lock the module's tensors; where that fails (locked-memory limits) they stay pageable."""
    try:
        for sub in module.modules():
            for _, param in sub.named_parameters(recurse=False):
                param.data = param.data.pin_memory()
            for name, buffer in list(sub.named_buffers(recurse=False)):
                if buffer is not None:
                    sub._buffers[name] = buffer.pin_memory()
    except RuntimeError:
        pass
