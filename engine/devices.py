"""The device jobs run on and the memory budget there. Nothing probes CUDA at import time."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Callable

from engine.settings import Settings

__all__ = ("DeviceBudget", "probe_device")


@dataclass(frozen=True)
class DeviceBudget:
    device: str
    budget_bytes: int
    total_bytes: int
    probe_free: Callable[[], int] | None = None
    """Free memory on the device right now (CUDA); None where only the budget's bookkeeping counts."""


def _cuda_available() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return torch.cuda.is_available()


def _ram_bytes() -> int:
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def probe_device(settings: Settings) -> DeviceBudget:
    device = settings.device
    if device == "auto":
        device = "cuda" if _cuda_available() else "cpu"
    if device.startswith("cuda"):
        import torch

        index = torch.device(device).index or 0
        device = f"cuda:{index}"
        free, total = torch.cuda.mem_get_info(index)
        budget = settings.memory_budget_bytes or max(0, total - settings.gpu_reserve_bytes)
        return DeviceBudget(device, budget, total, lambda: torch.cuda.mem_get_info(index)[0])
    total = _ram_bytes()
    budget = settings.memory_budget_bytes or int(total * settings.cpu_memory_fraction)
    return DeviceBudget("cpu", budget, total)
