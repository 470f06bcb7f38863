"""The registry of servable models: lookup by slug or alias, availability, lazy loading."""

from __future__ import annotations

import inspect

from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from model_registry.backends import PLANNED_BACKENDS, LoadedModel, import_loader, is_available
from model_registry.catalog import builtin_specs, load_specs_file
from model_registry.errors import CatalogError, DuplicateModel, ModelNotInstalled, ModelUnavailable, UnknownModel
from model_registry.placement import Placement
from model_registry.spec import ModelSpec, normalize_inference_type
from model_registry.weights import WeightsLocator

__all__ = ("Availability", "ModelRegistry")


@dataclass(frozen=True)
class Availability:
    installed: bool
    """The weights are on disk."""
    runnable: bool
    """Installed and this build has the backend that runs them."""
    path: Path | None
    reason: str
    """Empty when runnable; otherwise what is missing and how to get it."""


class ModelRegistry:
    def __init__(self, specs: Iterable[ModelSpec], locator: WeightsLocator) -> None:
        self.locator = locator
        self._specs: dict[str, ModelSpec] = {}
        self._names: dict[str, str] = {}
        for spec in specs:
            self.register(spec)

    @classmethod
    def from_files(cls, locator: WeightsLocator, user_config: Path | None = None) -> "ModelRegistry":
        specs = builtin_specs()
        if user_config is not None:
            for spec in load_specs_file(user_config):
                if spec.backend not in PLANNED_BACKENDS and not is_available(spec.backend):
                    raise CatalogError(f"{user_config}: model {spec.slug}: unknown backend {spec.backend!r}")
                specs.append(spec)
        return cls(specs, locator)

    def register(self, spec: ModelSpec) -> None:
        for name in (spec.slug, *spec.aliases):
            if name.lower() in self._names:
                raise DuplicateModel(f"model name {name!r} is used by {self._names[name.lower()]!r} and {spec.slug!r}")
        self._specs[spec.slug] = spec
        for name in (spec.slug, *spec.aliases):
            self._names[name.lower()] = spec.slug

    def get(self, slug: str) -> ModelSpec:
        try:
            return self._specs[self._names[slug.lower()]]
        except (KeyError, AttributeError):
            raise UnknownModel(str(slug)) from None

    def __contains__(self, slug: str) -> bool:
        return isinstance(slug, str) and slug.lower() in self._names

    def all(self) -> list[ModelSpec]:
        return list(self._specs.values())

    def for_types(self, inference_types: Iterable[str]) -> list[ModelSpec]:
        wanted = {normalize_inference_type(t) for t in inference_types if t.strip()}
        if not wanted:
            return self.all()
        return [s for s in self._specs.values() if wanted.intersection(s.inference_types)]

    def listing(self, inference_types: Iterable[str] = (), only_runnable: bool = False) -> list[ModelSpec]:
        """Models as clients are shown them: the runnable ones first, then the rest, catalog order kept
        in each part, because clients (the SDK's own tests among them) take the first of a list."""
        specs = self.for_types(inference_types)
        runnable = [spec for spec in specs if self.availability(spec).runnable]
        return runnable if only_runnable else runnable + [spec for spec in specs if spec not in runnable]

    def first_runnable(self, inference_type: str) -> ModelSpec | None:
        for spec in self.for_types([inference_type]):
            if self.availability(spec).runnable:
                return spec
        return None

    def availability(self, spec: ModelSpec) -> Availability:
        path = self.locator.find(spec)
        if not is_available(spec.backend):
            # Said before any install hint: pulling the weights of a model nothing can run would not help.
            found = f" (its weights are at {path})" if path else ", so installing its weights would not help"
            return Availability(
                path is not None,
                False,
                path,
                f"Model {spec.slug} cannot run in this drylocal build yet: its backend '{spec.backend}' is not "
                f"implemented{found}.",
            )
        if path is None:
            return Availability(False, False, None, self._install_hint(spec))
        return Availability(True, True, path, "")

    def require_runnable(self, spec: ModelSpec) -> Path:
        availability = self.availability(spec)
        if not availability.installed:
            raise ModelNotInstalled(spec.slug, availability.reason)
        if not availability.runnable:
            raise ModelUnavailable(spec.slug, availability.reason)
        assert availability.path is not None
        return availability.path

    def load(self, spec: ModelSpec, device: str, placement: Placement | None = None) -> LoadedModel:
        """Load the weights onto ``device``, placed as ``placement`` says (model_registry/placement.py; the
        loaders that can offload take it, the others are resident); blocking, so callers run it on the GPU
        executor."""
        path = self.require_runnable(spec)
        loader = import_loader(spec.backend)
        parameters = inspect.signature(loader).parameters
        options: dict = {}
        if "placement" in parameters:
            options["placement"] = placement
        if "components" in parameters:
            # Backends that serve some requests from a second checkpoint (a TTS mode) find it here.
            options["components"] = {name: self.locator.find_component(spec, name) for name in spec.components}
        elif "cache_dir" in parameters:
            # Loaders that convert checkpoints (e.g. to CTranslate2) keep the result beside our models.
            options["cache_dir"] = self.locator.models_dir / ".converted" / spec.slug
        return loader(spec, path, device, **options)

    def _install_hint(self, spec: ModelSpec) -> str:
        if spec.install_hint:
            how = spec.install_hint
        elif spec.source.repo_id:
            how = (
                f"run `drylocal pull {spec.slug}` on a machine with internet access, or copy the "
                f"{spec.source.repo_id} checkpoint into {self.locator.models_dir / spec.slug}"
            )
        else:
            how = f"place its weights at {spec.source.path or self.locator.models_dir / spec.slug}"
        return f"Model {spec.slug} is not installed: its weights were not found. To install it, {how}."
