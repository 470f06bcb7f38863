"""The device jobs run on and the memory budget there. Nothing probes CUDA at import time."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Callable

from engine.settings import Settings
from model_registry.footprint import Footprint
from model_registry.placement import Placement, place

__all__ = ("DeviceBudget", "cuda_budget", "probe_device", "probe_devices")


@dataclass(frozen=True)
class DeviceBudget:
    device: str
    budget_bytes: int
    total_bytes: int
    probe_free: Callable[[], int] | None = None
    """Free memory on the device right now (CUDA); None where only the budget's bookkeeping counts."""
    host_budget_bytes: int = 0
    """Host RAM that offloaded models' weights may take (a GPU's placements); on the CPU the budget itself."""
    gpu_reserve_bytes: int = 1_500_000_000
    """What the budget leaves free on the card (settings.gpu_reserve_bytes), to word card-size suggestions."""
    park_budget_bytes: int = 0
    """Host RAM that evicted models may be parked in (engine/scheduler.py's host tier); 0 = evicted models
    are dropped. On a GPU it is the host budget, shared with offloaded weights; on the CPU, the RAM the host
    fraction allows beyond the device budget (a parked model there simply stays loaded)."""

    def place(self, fp: Footprint) -> Placement:
        """The fastest placement of a model (its footprint) within this device's budgets."""
        return place(fp, self.budget_bytes, self.host_budget_bytes, device=self.device, gpu_reserve=self.gpu_reserve_bytes)


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
        return cuda_budget(settings, device, total, lambda: torch.cuda.mem_get_info(index)[0], free_bytes=free)
    total = _ram_bytes()
    budget = settings.memory_budget_bytes or int(total * settings.cpu_memory_fraction)
    host = settings.host_memory_budget_bytes or int(total * settings.host_memory_fraction)
    return DeviceBudget("cpu", budget, total, host_budget_bytes=budget, park_budget_bytes=max(0, host - budget))


def probe_devices(settings: Settings) -> list[DeviceBudget]:
    """One budget per device to drive: ``settings.devices``, else every CUDA device for ``device = "auto"``, else
    the one ``device`` names. Offloaded weights and parked models share the machine's RAM, so its host budget is
    split between the devices."""
    names = list(settings.devices)
    if not names and settings.device == "auto" and _cuda_available():
        import torch

        names = [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    if len(names) <= 1:
        return [probe_device(settings.model_copy(update={"device": names[0]}) if names else settings)]
    budgets = [probe_device(settings.model_copy(update={"device": name})) for name in names]
    return [_share_host(b, len(budgets)) for b in budgets]


def _share_host(budget: DeviceBudget, devices: int) -> DeviceBudget:
    from dataclasses import replace

    return replace(
        budget, host_budget_bytes=budget.host_budget_bytes // devices, park_budget_bytes=budget.park_budget_bytes // devices
    )


def cuda_budget(
    settings: Settings,
    device: str,
    total_bytes: int,
    probe_free: Callable[[], int] | None = None,
    ram_bytes: int | None = None,
    free_bytes: int | None = None,
) -> DeviceBudget:
    """The budget on a CUDA card of ``total_bytes`` in a machine with ``ram_bytes`` of RAM (default: this one's);
    also how `drylocal models --device-memory` plans as on a card this machine does not have. ``free_bytes``:
    what the card had free at start-up, so what a display or another process holds stays theirs."""
    available = total_bytes if free_bytes is None else min(total_bytes, free_bytes)
    budget = settings.memory_budget_bytes or max(0, available - settings.gpu_reserve_bytes)
    ram = _ram_bytes() if ram_bytes is None else ram_bytes
    host = settings.host_memory_budget_bytes or int(ram * settings.host_memory_fraction)
    return DeviceBudget(device, budget, total_bytes, probe_free, host, settings.gpu_reserve_bytes, park_budget_bytes=host)
