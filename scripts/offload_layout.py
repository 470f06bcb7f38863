"""Prints model_registry/offload_layout.toml: how each catalog diffusers model's components split when
offloaded (their GPU bytes group-offloaded, their largest layer), computed on the meta device.

    .venv/bin/python scripts/offload_layout.py > model_registry/offload_layout.toml

Nothing is downloaded or allocated; takes about half a minute (model_registry/offload_layout.py).
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def main() -> None:
    from model_registry.offload_layout import layout_toml

    sys.stdout.write(layout_toml(tuple(sys.argv[1:]) or None))


if __name__ == "__main__":
    main()
