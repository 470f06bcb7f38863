"""A user's models on disk: what they take, removing pulled weights, registering one's own checkpoint.

drylocal only ever deletes inside its models folder. Weights elsewhere (a user's own folder, a package's
data, the Hugging Face cache other programs share) are reported and left alone.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import msgspec

from model_registry.backends import BACKENDS
from model_registry.catalog import builtin_specs
from model_registry.errors import RegistryError
from model_registry.pull import sources_to_pull, staging_dir
from model_registry.registry import ModelRegistry
from model_registry.spec import INFERENCE_TYPES, ModelSpec, normalize_inference_type

__all__ = (
    "AddRefused",
    "CheckpointKind",
    "Removal",
    "add_user_model",
    "detect_checkpoint",
    "disk_bytes",
    "human_bytes",
    "remove_pulled",
)


def disk_bytes(path: Path | None) -> int:
    """The size of a weights file, or of every file under a weights folder (links followed, as a load would)."""
    if path is None or not path.exists():
        return 0
    if path.is_file():
        return path.stat().st_size
    return sum(file.stat().st_size for file in path.rglob("*") if file.is_file())


def human_bytes(count: int | None) -> str:
    if not count:
        return "-"
    for unit in ("B", "kB", "MB", "GB"):
        if count < 1000:
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1000
    return f"{count:.1f} TB"


# ---------------------------------------------------------------- drylocal rm
@dataclass
class Removal:
    removed: list[tuple[Path, int]] = field(default_factory=list)
    """Each path deleted and the bytes it freed."""
    kept: list[tuple[Path, str]] = field(default_factory=list)
    """Weights left in place, and why."""

    @property
    def freed_bytes(self) -> int:
        return sum(size for _, size in self.removed)


def remove_pulled(registry: ModelRegistry, spec: ModelSpec) -> Removal:
    """Delete what drylocal put in its models folder for ``spec``: its pulled repos (and their partial
    downloads), ``<models>/<slug>`` and the CTranslate2 copy a loader converted."""
    locator = registry.locator
    models_dir = locator.models_dir
    own = Path(spec.source.path).expanduser().resolve() if spec.source.path else None
    removal = Removal()
    found = locator.find(spec)
    if found is not None and (not _within(found, models_dir) or (own is not None and _overlaps(found, own))):
        removal.kept.append((found, _why_kept(spec, found, own, locator.hf_cache)))
    candidates = [models_dir / spec.slug, models_dir / ".converted" / spec.slug]
    for _, source in sources_to_pull(spec):
        store = locator.store_dir(source)
        sharers = [other.slug for other in registry.all() if other.slug != spec.slug and _pulls_into(registry, other, store)]
        if sharers:
            if store.exists():
                removal.kept.append((store, f"also holds the weights of {', '.join(sharers)}"))
            continue
        candidates += [store, staging_dir(models_dir, source)]
    for path in candidates:
        if not (path.exists() or path.is_symlink()) or not _within(path, models_dir):
            continue
        if own is not None and _overlaps(path, own):
            continue  # a user's own checkpoint kept inside the models folder: reported above, never deleted
        if path.is_symlink():
            # A link a user made to weights elsewhere: drop the link, never what it points at.
            path.unlink()
            removal.removed.append((path, 0))
            continue
        size = disk_bytes(path)
        shutil.rmtree(path) if path.is_dir() else path.unlink()
        removal.removed.append((path, size))
    return removal


def _pulls_into(registry: ModelRegistry, spec: ModelSpec, store: Path) -> bool:
    return any(registry.locator.store_dir(source) == store for _, source in sources_to_pull(spec))


def _within(path: Path, root: Path) -> bool:
    """``path`` names something strictly inside ``root``, with no link or ``..`` leading out of it."""
    root = root.resolve()
    parent = path.parent.resolve()
    return path.name not in ("", ".", "..") and (parent == root or parent.is_relative_to(root))


def _overlaps(path: Path, other: Path) -> bool:
    """One of the two is, or holds, the other."""
    path = path.resolve()
    return path == other or path.is_relative_to(other) or other.is_relative_to(path)


def _why_kept(spec: ModelSpec, found: Path, own: Path | None, hf_cache: Path) -> str:
    if own is not None and _overlaps(found, own):
        return "your own checkpoint (the path in its config.toml row); drylocal never deletes it"
    if found.resolve().is_relative_to(hf_cache.resolve()) or found.is_relative_to(hf_cache):
        return "in the Hugging Face cache, which other programs share; remove it with huggingface_hub's cache tools"
    if spec.source.package:
        return f"part of the installed package {spec.source.package}; `pip uninstall` removes it"
    return "outside the drylocal models folder"


# ---------------------------------------------------------------- drylocal add
class AddRefused(RegistryError):
    """``drylocal add`` cannot register the folder; the message says why and what to pass instead."""


@dataclass(frozen=True)
class CheckpointKind:
    description: str
    backend: str
    inference_types: tuple[str, ...]
    template: str
    """The catalog model whose price formula and limits the new model copies."""
    quantization: str
    """The precision on a GPU. A user's checkpoint is assumed unquantized; ``--quantization`` says otherwise."""
    limits: dict = field(default_factory=dict)
    """Limits read from the folder itself, over the template's."""


_WHISPER_TYPES = ("video2text", "audio2text", "video_file2text", "audio_file2text")

# Diffusers pipeline families by class-name prefix, most specific first.
_DIFFUSERS_FAMILIES = (
    ("LTX2", "diffusers-ltx2", ("txt2video", "img2video", "aud2video"), "Ltx2_3_19B_Dist_INT8"),
    ("LTX", "diffusers-ltx", ("txt2video", "img2video"), "Ltxv_13B_0_9_8_Distilled_FP8"),
    ("AceStep", "ace-step", ("txt2music",), "ACE-Step-v1.5-turbo"),
    # FLUX.1 Kontext edits or generates; it takes one image and tens of steps, as Qwen-Image-Edit does.
    ("FluxKontext", "diffusers", ("txt2img", "img2img"), "QwenImageEdit_Plus_NF4"),
    ("Flux2", "diffusers", ("txt2img", "img2img"), "Flux_2_Klein_4B_BF16"),
    ("Flux", "diffusers", ("txt2img",), "Flux1schnell"),
    ("ZImage", "diffusers", ("txt2img",), "ZImageTurbo_INT8"),
)


def detect_checkpoint(folder: Path) -> CheckpointKind | None:
    """What loads the folder, from the files each library writes; None when nothing here recognises it."""
    if not folder.is_dir():
        return None
    index = _json(folder / "model_index.json")
    if index is not None:
        return _diffusers_kind(str(index.get("_class_name", "")))
    if (folder / "modules.json").is_file():
        limits = {"max_input_tokens": tokens} if (tokens := _max_seq_length(folder)) else {}
        return CheckpointKind("a sentence-transformers model", "sentence-transformers", ("txt2embedding",), "Bge_M3_INT8", "fp16", limits)
    config = _json(folder / "config.json")
    if config is None:
        return None
    if (folder / "model.bin").is_file() and "lang_ids" in config and "suppress_ids" in config:
        return CheckpointKind("a CTranslate2 Whisper model", "faster-whisper", _WHISPER_TYPES, "WhisperLargeV3", "fp16")
    if config.get("model_type") == "whisper":
        description = "a transformers Whisper model (converted to CTranslate2 at its first load)"
        return CheckpointKind(description, "faster-whisper", _WHISPER_TYPES, "WhisperLargeV3", "fp16")
    if config.get("model_type") == "qwen3_tts" and (folder / "speech_tokenizer" / "config.json").is_file():
        description = f"a Qwen3-TTS 12 Hz checkpoint ({config.get('tts_model_type') or 'unknown mode'})"
        return CheckpointKind(description, "qwen3-tts", ("txt2audio",), "Qwen3_TTS", "bf16")
    causal = [name for name in config.get("architectures") or [] if str(name).endswith("ForCausalLM")]
    if causal:
        return CheckpointKind(f"a transformers causal LM ({causal[0]})", "transformers-llm", ("prompt-booster",), "Qwen2_5_0_5B_Instruct", "bf16")
    return None


def _diffusers_kind(class_name: str) -> CheckpointKind | None:
    description = f"a diffusers {class_name or 'pipeline'}"
    if "Img2Img" in class_name or "Edit" in class_name:
        # These pipelines need an input image, so they serve img2img only, like the catalog's Qwen-Image-Edit.
        return CheckpointKind(description, "diffusers", ("img2img",), "QwenImageEdit_Plus_NF4", "bf16")
    for prefix, backend, types, template in _DIFFUSERS_FAMILIES:
        if class_name.startswith(prefix):
            return CheckpointKind(description, backend, types, template, "bf16") if backend else None
    if class_name.endswith("Pipeline"):
        return CheckpointKind(description, "diffusers", ("txt2img",), "ZImageTurbo_INT8", "bf16")
    return None


def _max_seq_length(folder: Path) -> int | None:
    """The input length a sentence-transformers folder truncates to: sentence-transformers before 6 wrote
    it to sentence_bert_config.json, 6 leaves it in the tokenizer's config."""
    length = (_json(folder / "sentence_bert_config.json") or {}).get("max_seq_length")
    length = length or (_json(folder / "tokenizer_config.json") or {}).get("model_max_length")
    # Tokenizers without a limit carry a huge placeholder (1e30), which is no limit to copy.
    return int(length) if isinstance(length, (int, float)) and 0 < length < 1_000_000 else None


def _json(path: Path) -> dict | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def add_user_model(
    registry: ModelRegistry,
    config_file: Path,
    folder: Path,
    slug: str,
    *,
    tasks: list[str] | None = None,
    backend: str | None = None,
    name: str | None = None,
    quantization: str | None = None,
) -> tuple[ModelSpec, CheckpointKind]:
    """Append a ``[[models]]`` row for ``folder`` to the user's config file; returns the new spec and
    what it was registered as (detected, or what ``backend`` and ``tasks`` say)."""
    folder = folder.expanduser().resolve()
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", slug):
        raise AddRefused(f"{slug!r} is not a usable slug: use letters, digits, '.', '_' and '-'")
    if slug in registry:
        raise AddRefused(f"the slug {slug} is taken by model {registry.get(slug).slug}; choose another")
    if not folder.exists():
        raise AddRefused(f"{folder} does not exist")
    types = tuple(dict.fromkeys(normalize_inference_type(t) for t in tasks or ()))
    for unknown in (t for t in types if t not in INFERENCE_TYPES):
        raise AddRefused(f"unknown task {unknown}; the tasks are {', '.join(INFERENCE_TYPES)}")
    if backend is not None and backend not in BACKENDS:
        raise AddRefused(f"unknown backend {backend}; the backends are {', '.join(sorted(BACKENDS))}")
    kind = detect_checkpoint(folder)
    if backend and (kind is None or backend != kind.backend):
        if not types:
            raise AddRefused(f"with --backend {backend}, name the model's tasks too (--task)")
        kind = CheckpointKind(f"a {backend} checkpoint", backend, types, "", "bf16")
    elif kind is None:
        raise AddRefused(
            f"cannot tell what kind of checkpoint {folder} holds (looked for a diffusers model_index.json, a "
            "sentence-transformers modules.json, a Whisper or causal-LM config.json); pass --backend and --task"
        )
    template = _template(kind.backend, types or kind.inference_types, kind.template)
    if template is None:
        raise AddRefused(f"no catalog model serves {', '.join(types)} to copy a price and limits from")
    kind = dataclasses.replace(
        kind, inference_types=types or kind.inference_types, template=template.slug, quantization=quantization or kind.quantization
    )
    return _append_row(config_file, registry, slug, _row(slug, name or folder.name, folder, kind, template)), kind


def _template(backend: str, types: tuple[str, ...], preferred: str) -> ModelSpec | None:
    """The catalog model a new one prices and limits like: the family's own, else one of the same backend
    serving the same tasks, else any serving them."""
    wanted = set(types)
    catalog = builtin_specs()
    ranked = (
        [s for s in catalog if s.slug == preferred and wanted <= set(s.inference_types)]
        + [s for s in catalog if s.backend == backend and wanted <= set(s.inference_types)]
        + [s for s in catalog if wanted <= set(s.inference_types)]
        + [s for s in catalog if wanted & set(s.inference_types)]
    )
    return ranked[0] if ranked else None


def _row(slug: str, name: str, folder: Path, kind: CheckpointKind, template: ModelSpec) -> str:
    info = msgspec.to_builtins(template.info)
    # Weights take about their size on disk in memory; the extra fifth covers activations until the first
    # load measures the real figure, which then replaces this estimate.
    vram_bytes = max(int(disk_bytes(folder) * 1.2), 1_000_000)
    lines = [
        f"# {time.strftime('%Y-%m-%d')} `drylocal add`: {kind.description}; price and limits copied from {template.slug}",
        "[[models]]",
        f"slug = {_toml(slug)}",
        f"name = {_toml(name)}",
        f"inference_types = {_toml(list(kind.inference_types))}",
        f"backend = {_toml(kind.backend)}",
        f"quantization = {_toml(kind.quantization)}",
        f"vram_bytes = {vram_bytes}",
        f"source = {_toml({'path': str(folder)})}",
        f"price = {_toml(msgspec.to_builtins(template.price))}",
    ]
    limits = {**info.get("limits", {}), **kind.limits}
    for table, values in (("limits", limits), ("features", info.get("features", {})), ("defaults", info.get("defaults", {}))):
        lines.append(f"[models.info.{table}]")
        lines += [f"{_toml_key(key)} = {_toml(value)}" for key, value in values.items()]
    return "\n".join(lines) + "\n"


def _append_row(config_file: Path, registry: ModelRegistry, slug: str, row: str) -> ModelSpec:
    """Write the config with the row added only once the registry reads it back without complaint."""
    existing = config_file.read_text() if config_file.exists() else ""
    separator = "" if not existing else ("\n" if existing.endswith("\n") else "\n\n")
    config_file.parent.mkdir(parents=True, exist_ok=True)
    candidate = config_file.with_name(config_file.name + ".new")
    candidate.write_text(existing + separator + row)
    try:
        spec = ModelRegistry.from_files(registry.locator, candidate).get(slug)
    except RegistryError as exc:
        candidate.unlink()
        raise AddRefused(f"the new row does not read back: {exc}") from exc
    os.replace(candidate, config_file)
    return spec


def _toml(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)  # a JSON string is a valid TOML basic string
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{_toml_key(k)} = {_toml(v)}" for k, v in value.items()) + " }" if value else "{}"
    raise TypeError(f"no TOML form for {value!r}")


def _toml_key(key: str) -> str:
    return key if re.fullmatch(r"[A-Za-z0-9_-]+", key) else json.dumps(key)
