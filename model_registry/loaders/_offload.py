"""Applying a placement (model_registry/placement.py) to a loaded diffusers pipeline.

- resident: ``pipe.to(device)``.
- model_offload: ``pipe.enable_model_cpu_offload(device=device)``: accelerate hooks bring a component to the
  GPU when it is called and send the previous one back.
- group_offload: diffusers' group offloading with CUDA streams, per component (the next group is copied while
  one computes): the denoiser block by block (``block_level``, one block a group), every other component leaf
  by leaf (``leaf_level``), so that calls that bypass ``forward`` (``vae.decode``, ``audio_vae.encode``) still
  find each layer on the GPU when it runs.
- sequential_offload: ``pipe.enable_sequential_cpu_offload(device=device)``, one layer at a time.
- ``vae_tiling``: ``pipe.vae.enable_tiling()``.

The device is the budget's own (``cuda:N``): accelerate's hooks default to ``cuda:0`` otherwise. On the CPU a
pipeline already lives in RAM, so every placement is ``resident`` there.
"""

from __future__ import annotations

__all__ = ("DENOISER", "apply_placement", "group_offload_level")

DENOISER = "transformer"
"""The pipeline component that runs every step; the one split into blocks under group offload."""


def group_offload_level(name: str, module) -> str:
    """``block_level`` for the denoiser when it holds lists of blocks (what diffusers groups by), else ``leaf_level``.

    model_registry/offload_layout.py sizes every component's groups with this same rule."""
    import torch

    blocks = any(isinstance(child, (torch.nn.ModuleList, torch.nn.Sequential)) for child in module.children())
    if name == DENOISER and blocks and hasattr(module, "enable_group_offload"):
        return "block_level"
    return "leaf_level"


def _group_offload(pipe, device: str) -> None:
    import torch
    from diffusers import hooks

    onload = torch.device(device)
    for name, component in pipe.components.items():
        if not isinstance(component, torch.nn.Module):
            continue
        level = group_offload_level(name, component)
        options = {
            "onload_device": onload,
            "offload_device": torch.device("cpu"),
            "offload_type": level,
            "use_stream": True,
            "non_blocking": True,
        }
        if level == "block_level":
            # One block a group: with streams diffusers prefetches exactly one group ahead.
            options["num_blocks_per_group"] = 1
        if hasattr(component, "enable_group_offload"):
            component.enable_group_offload(**options)
        else:
            hooks.apply_group_offloading(component, **options)


def apply_placement(pipe, placement, device: str) -> None:
    """Move ``pipe`` (loaded in RAM) as ``placement`` says; ``placement`` None means resident."""
    kind = placement.kind if placement is not None and device.startswith("cuda") else "resident"
    if kind == "model_offload":
        pipe.enable_model_cpu_offload(device=device)
    elif kind == "group_offload":
        _group_offload(pipe, device)
    elif kind == "sequential_offload":
        pipe.enable_sequential_cpu_offload(device=device)
    else:
        pipe.to(device)
    if placement is not None and placement.vae_tiling:
        vae = getattr(pipe, "vae", None)
        if vae is not None and hasattr(vae, "enable_tiling"):
            vae.enable_tiling()
