"""The typed record of one servable model: what it is, where its weights come from, what it costs."""

from __future__ import annotations

from typing import Any

import msgspec

__all__ = (
    "INFERENCE_TYPES",
    "Language",
    "Lora",
    "ModelInfo",
    "ModelSpec",
    "Price",
    "Source",
    "Voice",
    "normalize_inference_type",
)

# The `inference_types` values of dryAPI's models endpoint (API_CONTRACT.md).
INFERENCE_TYPES = (
    "txt2img",
    "img2img",
    "txt2audio",
    "txt2music",
    "video2text",
    "audio2text",
    "video_file2text",
    "audio_file2text",
    "img2txt",
    "txt2video",
    "img2video",
    "aud2video",
    "txt2embedding",
    "img-upscale",
    "img-rmbg",
    "vid-upscale",
    "vid-rmbg",
    "video-replace",
    "prompt-booster",
)

# Spellings other clients and the hosted OpenAPI use for the same types.
_TYPE_ALIASES = {
    "vid2txt": "video2text",
    "aud2txt": "audio2text",
    "videofile2txt": "video_file2text",
    "audiofile2txt": "audio_file2text",
    "audio2video": "aud2video",
    "img_upscale": "img-upscale",
    "img_rmbg": "img-rmbg",
    "vid_upscale": "vid-upscale",
    "vid_rmbg": "vid-rmbg",
    "video_replace": "video-replace",
}


def _language_key(value: str) -> str:
    return value.strip().lower().replace("_", "-")


def normalize_inference_type(value: str) -> str:
    value = value.strip()
    return _TYPE_ALIASES.get(value, value)


class Source(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Where a model's weights live. The first one found on disk wins (see weights.py)."""

    repo_id: str | None = None
    """Hugging Face repo id, e.g. ``BAAI/bge-m3``."""
    revision: str | None = None
    """Pinned commit of ``repo_id``; None means the default branch."""
    filename: str | None = None
    """A single file inside the repo, for single-file checkpoints (``.pth``, ``.safetensors``)."""
    package: str | None = None
    """An installed Python package that ships the weights (the embedded defaults)."""
    package_subdir: str = "model"
    path: str | None = None
    """A local folder or file, for a user's own checkpoint."""


class Lora(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    name: str
    display_name: str
    source: Source = Source()
    default_weight: float = 1.0


class Voice(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    name: str
    slug: str
    gender: str | None = None


class Language(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    name: str
    slug: str
    voices: tuple[Voice, ...] = ()
    codes: tuple[str, ...] = ()
    """Language codes (BCP 47, e.g. ``en``) for a language whose slug is a name (Qwen3-TTS's ``English``)."""

    def names(self) -> set[str]:
        return {_language_key(n) for n in (self.slug, self.name, *self.codes)}


class ModelInfo(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """The ``info`` object of the models endpoint, exactly as clients read it."""

    limits: dict[str, Any] = {}
    features: dict[str, Any] = {}
    defaults: dict[str, Any] = {}


class Price(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """A named formula of model_registry.pricing and its rates."""

    formula: str
    rates: dict[str, float] = {}


class ModelSpec(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    slug: str
    """The dryAPI name clients send as ``model``."""
    name: str
    inference_types: tuple[str, ...]
    backend: str
    """Which loader serves it (model_registry.backends)."""
    source: Source
    components: dict[str, Source] = {}
    """Extra checkpoints a backend needs beside ``source`` (e.g. a second TTS mode)."""
    quantization: str = "fp32"
    """The weights' precision on a GPU: ``nf4``, ``int8``, ``fp8``, ``bf16``, ``fp16``, ``fp32``."""
    vram_bytes: int
    """Estimate used for scheduling until the loaded model's memory is measured; where ``memory`` is
    given, the sum of its components (the whole model's weights)."""
    memory: dict[str, int] = {}
    """Weight bytes per component at the loaded precision, computed by model_registry/weight_memory.py."""
    quantized_memory: dict[str, int] = {}
    """The text encoders' weight bytes quantized as the slug's transformer is (NF4, INT8, FP8 storage): what a
    placement that quantizes them loads (footprint.encoders_to_quantize), computed likewise."""
    info: ModelInfo = ModelInfo()
    loras: tuple[Lora, ...] = ()
    languages: tuple[Language, ...] = ()
    price: Price
    sigmas: tuple[float, ...] = ()
    """The noise schedule a distilled checkpoint was trained on: a job that runs that many steps runs it (other
    step counts keep the scheduler's own spacing)."""
    weights_note: str = ""
    """Where the published weights differ from what ``quantization`` names: how they get there at load."""
    keep_alive_seconds: float | None = None
    """Idle time before unloading: None = the server setting, -1 = never, 0 = at once."""
    aliases: tuple[str, ...] = ()
    """Other slugs clients use for the same model."""
    install_hint: str = ""
    description: str = ""
    license: str = ""
    """The weights' licence as their publisher names it, with what it allows; empty where the row does not say."""

    def supports(self, inference_type: str) -> bool:
        return normalize_inference_type(inference_type) in self.inference_types

    def limit(self, key: str, default: Any = None) -> Any:
        return self.info.limits.get(key, default)

    def feature(self, key: str, default: bool = False) -> bool:
        value = self.info.features.get(key, default)
        if isinstance(value, str):
            return value.lower() in ("1", "true", "yes")
        return bool(value)

    def default(self, key: str, fallback: Any = None) -> Any:
        return self.info.defaults.get(key, fallback)

    def find_language(self, value: str) -> Language | None:
        """The language a client means by ``lang``: its slug, name or code in any case, and a regional
        code by its primary subtag (``en-us`` finds Chatterbox's ``en``, ``en`` finds Kokoro's
        ``en-us``), since the SDK and the docs send codes whatever the model's own slugs are."""
        key = _language_key(value)
        for language in self.languages:
            if key in language.names():
                return language
        primary = key.split("-")[0]
        for language in self.languages:
            if primary in {name.split("-")[0] for name in language.names()}:
                return language
        return None
