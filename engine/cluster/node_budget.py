"""The budget of one device a node lends the cluster, as its actor sees it (pure, without Ray).

Ray gives a GPU actor its card as ``cuda:0`` (it sets CUDA_VISIBLE_DEVICES); the card's memory is the actor's
own, but offloaded weights and parked models live in the node's RAM, which every actor on the node shares: so,
as ``probe_devices`` does for the devices of one machine, each actor takes its share of the host budget.
"""

from __future__ import annotations

from engine.devices import DeviceBudget, _share_host, probe_device
from engine.settings import Settings

__all__ = ("node_device_budget",)


def node_device_budget(settings: Settings, has_gpu: bool, devices_on_node: int) -> DeviceBudget:
    """``has_gpu``: Ray assigned the actor a card (else it runs on the CPU); ``devices_on_node``: how many devices
    the node lends, one actor each."""
    budget = probe_device(settings.model_copy(update={"device": "cuda:0" if has_gpu else "cpu"}))
    return _share_host(budget, devices_on_node) if devices_on_node > 1 else budget
