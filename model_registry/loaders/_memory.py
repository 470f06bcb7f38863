"""Measuring what a loaded model really takes, so the scheduler can replace its estimate."""

from __future__ import annotations

import contextlib
from typing import Iterator

__all__ = ("measured_load", "module_bytes")


def module_bytes(module) -> int:
    tensors = list(module.parameters()) + list(module.buffers())
    return sum(t.numel() * t.element_size() for t in tensors)


@contextlib.contextmanager
def measured_load(device: str) -> Iterator[dict]:
    """Yields a dict whose ``cuda_bytes`` is set to the CUDA memory the block allocated."""
    box: dict = {"cuda_bytes": None}
    if not device.startswith("cuda"):
        yield box
        return
    import torch

    torch.cuda.synchronize(device)
    before = torch.cuda.memory_allocated(device)
    yield box
    torch.cuda.synchronize(device)
    box["cuda_bytes"] = max(0, torch.cuda.memory_allocated(device) - before)
