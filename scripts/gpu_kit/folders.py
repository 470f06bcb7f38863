"""A model folder per family, laid out as drylocal finds real weights (``$DRYLOCAL_HOME/models/<slug>/``).

Tiny: the tests' own builders (tests/*checkpoint*.py) write the folder, then every ``*.safetensors`` becomes a
placeholder of the same tensors (random_weights.py), so the tiny run reads weights through the same stand-in
as the full one. Full: the same folder (its tokenizers, scheduler, processor and model_index.json), with each
component of ``COMPONENTS[slug]`` given its full-size config from model_registry/configs/ and placeholders
of the network that config builds (on the meta device, with the library's own class). Networks small enough
to write (Real-ESRGAN, BEN2) are saved with real random weights instead.

``cut`` shortens a component (fewer transformer blocks) where the full model would not fit the check's time
or memory; the family's figures are then extrapolated by the ratio of the cut component's computed weights.
"""

from __future__ import annotations

import importlib
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

from scripts.gpu_kit.random_weights import (
    describe_module,
    describe_safetensors,
    element_size,
    is_placeholder,
    placeholder_tensors,
    write_checkpoint,
    write_placeholder,
)

__all__ = ("Prepared", "TinyBuilt", "SmallNetwork", "stored_weight_bytes", "placeholders_everywhere")

_BOOKKEEPING = ("_source", "_published_params", "_module", "_init")


@dataclass
class Prepared:
    """A family's folder, and what the check needs to know of it."""

    path: Path
    """What drylocal loads: a folder, or a checkpoint file for the single-file loaders."""
    scale: dict[str, float] = field(default_factory=dict)
    """component -> full size / cut size of its weights, for the components ``cut`` shortened."""
    cut_layers: dict[str, tuple[int, int]] = field(default_factory=dict)
    """component -> (blocks kept, blocks of the full model)."""


def stored_weight_bytes(folder: Path, fp_bytes: int) -> int:
    """Bytes of the weights ``folder`` holds or stands for (placeholders, ``.pth`` files), floating-point
    tensors counted at ``fp_bytes`` each: what a loader at that precision should end up holding."""
    import torch

    shapes: list[tuple[list[int], str]] = []
    for file in folder.rglob("*.safetensors"):
        if is_placeholder(file):
            shapes += placeholder_tensors(file).values()
    for file in folder.rglob("*.pth"):  # a state dict, or one nested by part ({"params_ema": {...}}, Kokoro's)
        shapes += [(list(t.shape), "F32" if t.is_floating_point() else "I64")
                   for t in _tensors(torch.load(file, map_location="cpu", weights_only=True))]
    total = 0
    for shape, dtype in shapes:
        floating = dtype.startswith(("F", "BF"))
        total += math.prod(shape) * (fp_bytes if floating else element_size(dtype))
    return total


def _tensors(value: Any) -> list:
    import torch

    if isinstance(value, torch.Tensor):
        return [value]
    if isinstance(value, dict):
        return [t for item in value.values() for t in _tensors(item)]
    return []


def placeholders_everywhere(folder: Path) -> None:
    """Every real safetensors file of ``folder`` replaced by the placeholder of its tensors."""
    for file in sorted(folder.rglob("*.safetensors")):
        if not is_placeholder(file):
            write_placeholder(file, describe_safetensors(file))


def _drop_weights(directory: Path) -> None:
    for pattern in ("*.safetensors", "*.safetensors.index.json", "*.bin", "*.bin.index.json"):
        for file in directory.glob(pattern):
            file.unlink()


def _meta_network(directory: Path, config: dict[str, Any], cls_name: str | None):
    """The network ``directory/config.json`` describes, built on the meta device with its library's class."""
    import torch

    if "architectures" in config:
        import transformers

        hf_config = transformers.AutoConfig.from_pretrained(str(directory))
        with torch.device("meta"):
            return getattr(transformers, cls_name or config["architectures"][0])(hf_config)
    module = importlib.import_module(config.get("_module", "diffusers"))
    cls = getattr(module, cls_name or config["_class_name"])
    with torch.device("meta"):
        return cls.from_config({k: v for k, v in config.items() if not k.startswith("_")})


def _meta_bytes(network) -> int:
    return sum(math.prod(shape) * element_size(dtype) for shape, dtype in describe_module(network).values())


def swap_in_full_configs(folder: Path, slug: str, cut: Mapping[str, Mapping[str, int]]) -> Prepared:
    """Each component of ``COMPONENTS[slug]`` gets its full-size config and placeholders (see the module doc)."""
    from model_registry.weight_memory import COMPONENTS, read_config

    prepared = Prepared(folder)
    for component, parts in COMPONENTS[slug].items():
        if len(parts) != 1:
            raise NotImplementedError(f"{slug}.{component}: a component of several networks has no full-size folder")
        part = parts[0]
        config = {k: v for k, v in read_config(part.config).items() if k not in _BOOKKEEPING}
        module_name = read_config(part.config).get("_module")
        directory = folder if component == "model" else folder / component
        transformers_model = "architectures" in config
        if transformers_model and part.cls:
            config["architectures"] = [part.cls]
        shortened = dict(cut.get(component, {}))
        full_layers = {key: config[key] for key in shortened}
        directory.mkdir(parents=True, exist_ok=True)
        _drop_weights(directory)
        with_module = {**config, "_module": module_name} if module_name else config
        if shortened:
            full_network = _write_and_build(directory, config, with_module, part.cls)
            config = {**config, **shortened}
            with_module = {**with_module, **shortened}
        network = _write_and_build(directory, config, with_module, part.cls)
        if shortened:
            prepared.scale[component] = _meta_bytes(full_network) / _meta_bytes(network)
            key = next(iter(shortened))
            prepared.cut_layers[component] = (int(shortened[key]), int(full_layers[key]))
        weights_name = "model.safetensors" if transformers_model else "diffusion_pytorch_model.safetensors"
        write_checkpoint(directory, describe_module(network), weights_name)
    return prepared


def _write_and_build(directory: Path, config: dict, with_module: dict, cls_name: str | None):
    (directory / "config.json").write_text(json.dumps(config, indent=1))
    return _meta_network(directory, with_module, cls_name)


@dataclass(frozen=True)
class TinyBuilt:
    """A folder from a tests/ builder: tiny as built, or with full-size configs swapped in."""

    builder: str
    """``module:function`` of tests/, taking the target folder."""
    slug: str
    cut: Mapping[str, Mapping[str, int]] = field(default_factory=dict)
    full_fixups: Callable[[Path], None] | None = None
    """What the full-size folder needs beyond its networks' configs (a feature extractor's mel bins, ...)."""
    tiny_fixups: Callable[[Path], None] | None = None
    swap: bool = True
    """False: the full-size folder is ``full_fixups``' work alone (a layout COMPONENTS does not describe)."""

    def prepare(self, target: Path, full: bool) -> Prepared:
        module_name, _, name = self.builder.partition(":")
        getattr(importlib.import_module(module_name), name)(target)
        prepared = Prepared(target)
        if full and self.swap:
            prepared = swap_in_full_configs(target, self.slug, self.cut)
            if self.full_fixups is not None:
                self.full_fixups(target)
        elif self.tiny_fixups is not None:
            self.tiny_fixups(target)
        placeholders_everywhere(target)
        return prepared


@dataclass(frozen=True)
class SmallNetwork:
    """A network of this project small enough to save whole: random weights from its own initialisation, as
    the loader's single checkpoint file (``filename``); ``tiny`` holds the tiny geometry's arguments."""

    config: str
    """Its full-size config under model_registry/configs/ (``"module:Class"``, defaults = the release)."""
    filename: str
    tiny: Mapping[str, Any]
    wrap: str | None = None
    """The key the release nests its state dict under (``params_ema``, ``model_state_dict``)."""
    tiny_config: Mapping[str, Any] = field(default_factory=dict)
    """What the tiny folder's config.json adds to the geometry (BEN2 reads both there: its working size)."""

    def prepare(self, target: Path, full: bool) -> Prepared:
        import torch

        from model_registry.weight_memory import read_config

        module_name, _, name = read_config(self.config)["_class_name"].partition(":")
        cls = getattr(importlib.import_module(module_name), name)
        torch.manual_seed(0)
        network = (cls() if full else cls(**self.tiny)).eval()
        state = {k: v.contiguous() for k, v in network.state_dict().items()}
        target.mkdir(parents=True, exist_ok=True)
        file = target / self.filename
        torch.save({self.wrap: state} if self.wrap else state, file)
        if not full:
            (target / "config.json").write_text(json.dumps({**self.tiny, **self.tiny_config}))
        return Prepared(target)
