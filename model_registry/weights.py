"""Finds a model's weights on disk: the drylocal model folder, the Hugging Face cache, or a package."""

from __future__ import annotations

import importlib.util
import os
import time
from pathlib import Path

from model_registry.spec import ModelSpec, Source

__all__ = ("WeightsLocator", "default_hf_cache")


def default_hf_cache() -> Path:
    """The Hugging Face hub cache, honouring the same variables huggingface_hub reads."""
    if cache := os.environ.get("HF_HUB_CACHE"):
        return Path(cache)
    hf_home = os.environ.get("HF_HOME") or os.path.join(os.path.expanduser("~"), ".cache", "huggingface")
    return Path(hf_home) / "hub"


_FIND_KEPT_SECONDS = 2.0


class WeightsLocator:
    """Resolves a Source to a local path without importing torch or huggingface_hub.

    Order: an explicit ``path``; ``<models_dir>/<slug>``; ``<models_dir>/<org>--<name>``; the HF cache
    snapshot of the pinned revision (or ``refs/main``); a package that ships the weights.
    """

    def __init__(self, models_dir: Path, hf_cache: Path | None = None) -> None:
        self.models_dir = models_dir
        self.hf_cache = hf_cache or default_hf_cache()
        self._packages: dict[str, Path] = {}
        """Where each installed package was found: a package does not move while the process runs, and
        ``find_spec`` takes the import lock (a tenth of the server's time under 32 embedding clients)."""
        self._found: dict[tuple[str, Source], tuple[Path, float]] = {}
        """Recent finds: every submit asks twice (runnable? tokenizer?), and a search is half a dozen
        stats. Only finds are kept, briefly, so weights pulled or removed meanwhile are seen at once."""

    def find(self, spec: ModelSpec, source: Source | None = None) -> Path | None:
        source = source or spec.source
        key = (spec.slug, source)
        now = time.monotonic()
        recent = self._found.get(key)
        if recent is not None and recent[1] > now and recent[0].exists():
            return recent[0]
        for candidate in self._candidates(spec.slug, source):
            if candidate is not None and _has_weights(candidate, source.filename):
                found = candidate / source.filename if source.filename and candidate.is_dir() else candidate
                self._found[key] = (found, now + _FIND_KEPT_SECONDS)
                return found
        self._found.pop(key, None)
        return None

    def find_component(self, spec: ModelSpec, name: str) -> Path | None:
        """Where one of ``spec.components`` is: never the slug's own folder, which holds the main checkpoint."""
        source = spec.components[name]
        for candidate in self._candidates(None, source):
            if candidate is not None and _has_weights(candidate, source.filename):
                return candidate / source.filename if source.filename and candidate.is_dir() else candidate
        return None

    def store_dir(self, source: Source) -> Path:
        """Where ``drylocal pull`` puts a repo's files inside the drylocal model folder."""
        assert source.repo_id, "only hub sources are pulled"
        return self.models_dir / source.repo_id.replace("/", "--")

    def _candidates(self, slug: str | None, source: Source):
        if source.path:
            yield Path(source.path).expanduser()
        if slug is not None:
            yield self.models_dir / slug
        if source.repo_id:
            yield self.store_dir(source)
            yield self._hf_snapshot(source)
        if source.package:
            yield self._package_dir(source.package, source.package_subdir)

    def _package_dir(self, package: str, subdir: str) -> Path | None:
        if package not in self._packages:
            root = _package_root(package)
            if root is None:
                return None  # not cached: a package installed later is found
            self._packages[package] = root
        return self._packages[package] / subdir

    def _hf_snapshot(self, source: Source) -> Path | None:
        repo_dir = self.hf_cache / ("models--" + source.repo_id.replace("/", "--"))
        snapshots = repo_dir / "snapshots"
        if not snapshots.is_dir():
            return None
        if source.revision:
            return snapshots / source.revision
        ref = repo_dir / "refs" / "main"
        if ref.is_file():
            return snapshots / ref.read_text().strip()
        found = sorted(snapshots.iterdir(), key=lambda p: p.stat().st_mtime, reverse=True)
        return found[0] if found else None


def _package_root(package: str) -> Path | None:
    try:
        found = importlib.util.find_spec(package)
    except (ImportError, ValueError):
        return None
    if found is None or not found.submodule_search_locations:
        return None
    return Path(next(iter(found.submodule_search_locations)))


def _has_weights(path: Path, filename: str | None) -> bool:
    if filename and path.is_dir():
        return (path / filename).is_file()
    if path.is_file():
        return True
    return path.is_dir() and any(path.iterdir())
