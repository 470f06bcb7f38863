"""Reads model rows (the built-in catalog.toml and a user's config.toml) into ModelSpecs."""

from __future__ import annotations

import tomllib
from importlib import resources
from pathlib import Path
from typing import Any

import msgspec

from model_registry.errors import CatalogError
from model_registry.spec import ModelSpec

__all__ = ("builtin_specs", "load_specs_file", "parse_specs")


def parse_specs(rows: list[dict[str, Any]], origin: str) -> list[ModelSpec]:
    specs = []
    for index, row in enumerate(rows):
        try:
            specs.append(msgspec.convert(row, ModelSpec))
        except msgspec.ValidationError as exc:
            slug = row.get("slug", f"#{index}")
            raise CatalogError(f"{origin}: model {slug}: {exc}") from exc
    return specs


def builtin_specs() -> list[ModelSpec]:
    text = resources.files("model_registry").joinpath("catalog.toml").read_text()
    return parse_specs(tomllib.loads(text).get("models", []), "built-in catalog")


def load_specs_file(path: Path) -> list[ModelSpec]:
    """The ``[[models]]`` rows of a user's config file; a missing file holds none."""
    if not path.exists():
        return []
    try:
        data = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise CatalogError(f"{path}: {exc}") from exc
    return parse_specs(data.get("models", []), str(path))
