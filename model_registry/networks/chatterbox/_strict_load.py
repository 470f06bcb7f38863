"""The one strict loading every Chatterbox network's ``load_*`` uses: the checkpoint's entries under a
prefix must be exactly the network's, each with its shape, or a ValueError names the differences
(with the prefix, as they appear in the file)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TypeVar

import torch
from torch import nn

__all__ = ("listed", "load_exact", "own_entries", "require_exact")

M = TypeVar("M", bound=nn.Module)


def listed(keys: list[str], limit: int = 8) -> str:
    shown = ", ".join(keys[:limit])
    return shown if len(keys) <= limit else f"{shown} and {len(keys) - limit} more"


def own_entries(state_dict: Mapping[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    """The entries under ``prefix``, with it stripped; others belong to other networks."""
    return {key[len(prefix) :]: value for key, value in state_dict.items() if key.startswith(prefix)}


def require_exact(model: nn.Module, own: Mapping[str, torch.Tensor], prefix: str, name: str) -> None:
    expected = {key: value.shape for key, value in model.state_dict().items()}
    missing = sorted(expected.keys() - own.keys())
    unexpected = sorted(own.keys() - expected.keys())
    misshapen = sorted(k for k in expected.keys() & own.keys() if own[k].shape != expected[k])
    if not (missing or unexpected or misshapen):
        return
    problems = []
    if missing:
        problems.append(f"missing {len(missing)}: {listed([prefix + k for k in missing])}")
    if unexpected:
        problems.append(f"unexpected {len(unexpected)}: {listed([prefix + k for k in unexpected])}")
    if misshapen:
        shapes = [f"{prefix}{k} {tuple(own[k].shape)} != {tuple(expected[k])}" for k in misshapen]
        problems.append(f"misshapen {len(misshapen)}: {listed(shapes)}")
    raise ValueError(f"not {name} state dict under {prefix!r} ({'; '.join(problems)})")


def load_exact(build: Callable[[], M], state_dict: Mapping[str, torch.Tensor], prefix: str, name: str, dtype: torch.dtype) -> M:
    """The network ``build`` makes, in eval mode, holding exactly the entries of ``state_dict`` under
    ``prefix``, floating ones cast to ``dtype``. ``build`` runs on the meta device: the checkpoint
    supplies every tensor, so a random initialization would be wasted."""
    own = own_entries(state_dict, prefix)
    with torch.device("meta"):
        model = build()
    require_exact(model, own, prefix, name)
    own = {k: v.to(dtype) if v.is_floating_point() else v for k, v in own.items()}
    model.load_state_dict(own, strict=True, assign=True)
    return model.eval()
