"""How each component of a catalog diffusers model splits when it is offloaded, computed on the meta device
(weight_memory.py's builds, at the loaded precision) the way loaders/_offload.py offloads it.
``scripts/offload_layout.py`` writes model_registry/offload_layout.toml from it; model_registry/footprint.py
reads that file, so placing a model never imports torch.

Per component, two figures:

- ``group``: its GPU bytes while it runs group-offloaded with CUDA streams. At ``block_level`` (the denoiser)
  diffusers keeps every tensor outside the top-level block lists on the GPU for the whole forward, plus two
  blocks: the one computing and the one being prefetched. At ``leaf_level`` every module's own tensors are a
  group (a Linear, a Conv, an Embedding, a norm's weight), so two of the largest.
- ``layer``: its largest single module's own tensors; sequential offload moves one module at a time.
"""

from __future__ import annotations

from collections import defaultdict

from model_registry.spec import ModelSpec
from model_registry.weight_memory import COMPONENTS, _library, _precision, as_loaded, build_on_meta, read_config, sized_tensors

__all__ = ("component_layout", "layout_toml", "offloadable_slugs")


def offloadable_slugs() -> tuple[str, ...]:
    """Catalog slugs whose loader applies placements and whose components have configs."""
    from model_registry.catalog import builtin_specs
    from model_registry.footprint import OFFLOADABLE_BACKENDS

    return tuple(s.slug for s in builtin_specs() if s.backend in OFFLOADABLE_BACKENDS and s.slug in COMPONENTS)


def _subtree(own: dict[str, int], path: str) -> int:
    return sum(size for name, size in own.items() if name == path or name.startswith(path + "."))


def _block_level_bytes(module, path: str, own: dict[str, int], block_modules: set[str]) -> int:
    """diffusers' block-level grouping (hooks/group_offloading.py), one block a group, with one prefetched."""
    import torch

    root, blocks, inner = own.get(path, 0), [], []
    for name, child in module.named_children():
        child_path = f"{path}.{name}" if path else name
        if name in block_modules:
            inner.append(_block_level_bytes(child, child_path, own, block_modules))
        elif isinstance(child, (torch.nn.ModuleList, torch.nn.Sequential)):
            blocks += [_subtree(own, f"{child_path}.{i}") for i in range(len(child))]
        else:
            root += _subtree(own, child_path)
    return root + max([2 * max(blocks, default=0), *inner])


def component_layout(spec: ModelSpec) -> dict[str, tuple[int, int]]:
    """component -> (group bytes, layer bytes) for ``spec`` (a slug in weight_memory.COMPONENTS)."""
    from model_registry.loaders._offload import group_offload_level

    layout = {}
    for component, parts in COMPONENTS[spec.slug].items():
        group = layer = 0
        for part in parts:
            library = _library(read_config(part.config))
            precision = _precision(spec, component, library, part.dtype)
            model = as_loaded(build_on_meta(part), precision, library)
            own: dict[str, int] = defaultdict(int)
            for name, _, _, nbytes in sized_tensors(model, precision, library):
                own[name] += nbytes
            part_layer = max(own.values(), default=0)
            if group_offload_level(component, model) == "block_level":
                block_modules = set(getattr(model, "_group_offload_block_modules", None) or ())
                part_group = _block_level_bytes(model, "", own, block_modules)
            else:
                part_group = 2 * part_layer
            group, layer = max(group, part_group), max(layer, part_layer)
        layout[component] = (group, layer)
    return layout


def layout_toml(slugs: tuple[str, ...] | None = None) -> str:
    """The contents of model_registry/offload_layout.toml."""
    from model_registry.catalog import builtin_specs

    specs = {s.slug: s for s in builtin_specs()}
    lines = [
        "# How each component of the catalog's diffusers models splits when offloaded: `group` = its GPU bytes",
        "# while group-offloaded, `layer` = its largest single layer. Written by scripts/offload_layout.py from",
        "# model_registry/offload_layout.py (meta-device builds); read by model_registry/footprint.py.",
    ]
    for slug in slugs or offloadable_slugs():
        lines.append(f'\n["{slug}"]')
        for component, (group, layer) in component_layout(specs[slug]).items():
            lines.append(f"{component} = {{ group = {group:_}, layer = {layer:_} }}")
    return "\n".join(lines) + "\n"
