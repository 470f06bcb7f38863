"""The weight memory of every catalog model model_registry/weight_memory.py computes, as a table, beside
the catalog's own figures; ``--toml`` prints each row's ``memory`` and ``vram_bytes`` lines instead.

    .venv/bin/python scripts/weight_memory.py [--toml] [SLUG ...]

Nothing is downloaded or allocated: every component is built on the meta device from the configs in
model_registry/configs/. Takes about half a minute, most of it importing diffusers and transformers.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def _underscored(n: int) -> str:
    return f"{n:_}"


def main() -> None:
    from model_registry.catalog import builtin_specs
    from model_registry.weight_memory import component_memory, computed_slugs

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("slugs", nargs="*", help="catalog slugs (default: every one with configs)")
    parser.add_argument("--toml", action="store_true", help="print catalog lines instead of the table")
    args = parser.parse_args()
    specs = {spec.slug: spec for spec in builtin_specs()}
    slugs = args.slugs or list(computed_slugs())

    if not args.toml:
        print(f"{'slug':30} {'component':24} {'params':>15} {'precision':14} {'GB':>7}  catalog GB")
    for slug in slugs:
        spec = specs[slug]
        rows = component_memory(spec)
        total = sum(row.bytes for row in rows)
        if args.toml:
            figures = ", ".join(f"{row.component} = {_underscored(row.bytes)}" for row in rows)
            print(f"# {slug}\nvram_bytes = {_underscored(total)}\nmemory = {{ {figures} }}")
            quantized = component_memory(spec, quantized_encoders=True)
            if quantized:
                figures = ", ".join(f"{row.component} = {_underscored(row.bytes)}" for row in quantized)
                print(f"quantized_memory = {{ {figures} }}")
            continue
        for row in rows:
            catalog = spec.memory.get(row.component)
            shown = f"{catalog / 1e9:10.2f}" if catalog is not None else f"{'-':>10}"
            print(f"{slug:30} {row.component:24} {row.params:>15,} {row.precision:14} {row.bytes / 1e9:7.2f}  {shown}")
        print(f"{slug:30} {'= total':24} {sum(r.params for r in rows):>15,} {'':14} {total / 1e9:7.2f}  "
              f"{spec.vram_bytes / 1e9:10.2f} (vram_bytes)")


if __name__ == "__main__":
    main()
