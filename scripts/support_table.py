"""Prints the README's "Which models fit your GPU" table: every catalog model's placement on 12, 16, 24, 48 and
80 GB cards in a machine with 64 GB of RAM, decided as `drylocal models --device-memory BYTES --host-memory
BYTES` decides it (model_registry/placement.py), with the server's default settings.

    .venv/bin/python scripts/support_table.py

Nothing is loaded: the figures come from the catalog, model_registry/offload_layout.toml and the working-memory
estimates in model_registry/footprint.py.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

CARDS_GB = (12, 16, 24, 48, 80)
RAM_GB = 64

_LABELS = {
    "resident": "resident",
    "model_offload": "model offload",
    "group_offload": "group offload",
    "sequential_offload": "sequential offload",
    "too_big": "**does not fit**",
}


def _cell(placement, quantization: str) -> str:
    if placement.kind == "too_big":
        return _LABELS["too_big"]
    encoders = f" + {quantization.upper()} text encoder" if placement.quantized_encoders else ""
    tiles = " + VAE tiles" if placement.vae_tiling else ""
    return f"{_LABELS[placement.kind]}{encoders}{tiles}, {placement.gpu_bytes / 1e9:.1f} GB"


def table() -> str:
    from engine.devices import cuda_budget
    from engine.settings import Settings
    from model_registry.catalog import builtin_specs
    from model_registry.footprint import footprint, read_layout

    settings = Settings.model_construct()  # the defaults, whatever this machine's environment says
    budgets = [cuda_budget(settings, "cuda:0", gb * 2**30, ram_bytes=RAM_GB * 2**30) for gb in CARDS_GB]
    layout = read_layout()
    lines = [
        "| model | " + " | ".join(f"{gb} GB" for gb in CARDS_GB) + " |",
        "|---|" + "---|" * len(CARDS_GB),
    ]
    for spec in builtin_specs():
        fp = footprint(spec, layout)
        lines.append(f"| `{spec.slug}` | " + " | ".join(_cell(budget.place(fp), spec.quantization) for budget in budgets) + " |")
    host = budgets[0].host_budget_bytes / 1e9
    lines += [
        "",
        f"Cards as sold (12 GB = 12 GiB), less the {settings.gpu_reserve_bytes / 1e9:.1f} GB reserve; {RAM_GB} GB of RAM, of "
        f"which offloaded weights may take {settings.host_memory_fraction:.0%} ({host:.1f} GB). The figure is the GPU "
        "memory a job takes at the largest request the model accepts (estimated working memory included).",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    print(table())
