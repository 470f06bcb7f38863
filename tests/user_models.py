"""Registers tiny test checkpoints as a user's own models, the way a user would: rows in config.toml."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from engine import Settings

__all__ = ("model_entry", "register_models", "tiny_flux_entry", "toml_value")


def toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{k} = {toml_value(v)}" for k, v in value.items()) + " }"
    if isinstance(value, (str, Path)):
        return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'
    return repr(value)


def model_entry(
    slug: str,
    types: list[str],
    backend: str,
    path: Path,
    price: dict[str, Any],
    *,
    limits: dict[str, Any] | None = None,
    features: dict[str, Any] | None = None,
    defaults: dict[str, Any] | None = None,
    vram_bytes: int = 10_000_000,
    **extra: Any,
) -> str:
    """One ``[[models]]`` row; ``extra`` adds top-level keys such as ``loras`` or ``languages``."""
    lines = [
        "[[models]]",
        f"slug = {toml_value(slug)}",
        f"name = {toml_value(slug)}",
        f"inference_types = {toml_value(types)}",
        f"backend = {toml_value(backend)}",
        f"vram_bytes = {vram_bytes}",
        f"source = {toml_value({'path': path})}",
        f"price = {toml_value(price)}",
        *(f"{key} = {toml_value(value)}" for key, value in extra.items()),
    ]
    for table, values in (("limits", limits), ("features", features), ("defaults", defaults)):
        if values:
            lines.append(f"[models.info.{table}]")
            lines += [f"{key} = {toml_value(value)}" for key, value in values.items()]
    return "\n".join(lines) + "\n"


def register_models(settings: Settings, *entries: str) -> None:
    settings.home.mkdir(parents=True, exist_ok=True)
    settings.config_file.write_text("\n".join(entries))


def tiny_flux_entry(path: Path) -> str:
    """tests/flux_checkpoint.py's tiny FLUX as txt2img model ``TinyFlux``: for tests that need a job with
    step-by-step previews."""
    return model_entry(
        "TinyFlux", ["txt2img"], "diffusers", path, {"formula": "image_steps", "rates": {"per_step_512": 0.00034}},
        limits={"min_width": 32, "max_width": 128, "min_height": 32, "max_height": 128, "resolution_step": 16,
                "min_steps": 1, "max_steps": 8},
        features={"supports_guidance": False, "supports_negative_prompt": False},
        defaults={"steps": 2},
    )
