"""Which of a hub repo's files a backend's loader reads: the allow-list ``drylocal pull`` fetches.

A repo often holds far more than its loader reads: the publisher's single-file checkpoints beside the
diffusers folders (LTX-2's 27 GB ``ltx-2-19b-*.safetensors`` at the root), the same weights again as
``.bin``, ``.msgpack``, ``.h5`` or ONNX, fp16 copies beside the full-precision ones, sample images.
``LAYOUTS`` names the layout each backend's loader reads; a layout picks those files out of the hub's
listing by name (and, for diffusers, from ``model_index.json``). A new backend is a new row; a new kind
of folder is a new layout.
"""

from __future__ import annotations

import posixpath
import re
from dataclasses import dataclass
from typing import Callable, Collection, Protocol

__all__ = (
    "EVERY_FILE",
    "LAYOUTS",
    "LORA",
    "DiffusersFolder",
    "Either",
    "EveryFile",
    "Layout",
    "NamedFiles",
    "NotPullable",
    "SingleFile",
    "WeightFolders",
    "select_files",
)

ReadJson = Callable[[str], dict]
"""Reads one of the repo's files (an index such as ``model_index.json``) as JSON."""


class NotPullable(ValueError):
    """The repo does not hold what the model's loader reads."""


class Layout(Protocol):
    def select(self, names: Collection[str], read_json: ReadJson) -> set[str]:
        """The repo paths, out of ``names`` (the hub's listing), that the loader reads."""
        ...


# transformers' and diffusers' weight file stems: from_pretrained reads no other name.
_STEMS = "model|pytorch_model|diffusion_pytorch_model|tf_model|flax_model|diffusion_flax_model|rust_model"
_FORMATS = "safetensors|bin|h5|msgpack|ot|onnx|ckpt"
_SHARD = r"-\d{5}-of-\d{5}"
# model.safetensors, model-00001-of-00002.safetensors, model.fp16.safetensors,
# model.fp16-00001-of-00002.safetensors and the legacy model-00001-of-00002.fp16.safetensors.
_WEIGHTS = re.compile(rf"(?:{_STEMS})(?:\.(?P<variant>\w+))?(?:{_SHARD})?(?:\.(?P<legacy>\w+))?\.(?P<format>{_FORMATS})")
# model.safetensors.index.json, model.safetensors.index.fp16.json and the legacy model.safetensors.fp16.index.json.
_INDEX = re.compile(rf"(?:{_STEMS})\.(?P<format>{_FORMATS})(?:\.(?P<legacy>\w+))?\.index(?:\.(?P<variant>\w+))?\.json")
PREFERRED_FORMATS = ("safetensors", "bin")
"""What from_pretrained reads, best first; it never falls back to the TensorFlow, Flax or ONNX copies."""
CONFIG_SUFFIXES = frozenset({".json", ".txt", ".model", ".jinja", ".tiktoken"})
"""Configs, tokenizers (vocab, merges, sentencepiece) and chat templates: what a weights folder holds beside weights."""


def _weights(name: str) -> tuple[str, str | None] | None:
    """(format, variant) of a transformers/diffusers weights file or its shard index; None for other files."""
    base = posixpath.basename(name)
    match = _WEIGHTS.fullmatch(base) or _INDEX.fullmatch(base)
    if match is None:
        return None
    return match["format"], match["variant"] or match["legacy"]


def _glob(pattern: str) -> re.Pattern:
    """``*`` within one folder, everything else literal."""
    return re.compile(re.escape(pattern).replace(r"\*", "[^/]*"))


@dataclass(frozen=True)
class WeightFolders:
    """transformers-style folders (``""`` is the repo's root; the others are patterns): in each, the config
    and tokenizer files and one copy of the weights, the one from_pretrained reads: safetensors over .bin,
    the files without a variant (no loader asks for one, so ``model.fp16.safetensors`` stays behind)."""

    folders: tuple[str, ...] = ("",)

    def select(self, names: Collection[str], read_json: ReadJson) -> set[str]:
        wanted = re.compile("|".join(f"(?:{folder})" for folder in self.folders))
        by_folder: dict[str, list[str]] = {}
        for name in names:
            folder = posixpath.dirname(name)
            if wanted.fullmatch(folder):
                by_folder.setdefault(folder, []).append(name)
        chosen: set[str] = set()
        for files in by_folder.values():
            weights = {name: found for name in files if (found := _weights(name))}
            present = {fmt for fmt, variant in weights.values() if variant is None}
            best = next((fmt for fmt in PREFERRED_FORMATS if fmt in present), None)
            chosen.update(name for name, (fmt, variant) in weights.items() if fmt == best and variant is None)
            chosen.update(n for n in files if n not in weights and posixpath.splitext(n)[1] in CONFIG_SUFFIXES)
        return chosen


@dataclass(frozen=True)
class DiffusersFolder:
    """``model_index.json`` and the folder of each component it names, each read as a WeightFolders folder;
    the root's single-file checkpoints and folders no component names stay on the hub."""

    def select(self, names: Collection[str], read_json: ReadJson) -> set[str]:
        if "model_index.json" not in names:
            raise NotPullable("it has no model_index.json, and this model's loader reads a diffusers folder")
        index = read_json("model_index.json")
        components = [
            key
            for key, value in index.items()
            if not key.startswith("_") and isinstance(value, list) and len(value) == 2 and value[0] is not None
        ]
        folders = WeightFolders(tuple(re.escape(component) for component in components))
        return {"model_index.json", *folders.select(names, read_json)}


@dataclass(frozen=True)
class NamedFiles:
    """Files by name: in ``"a|b"`` the first alternative the repo has; ``*`` matches within one folder."""

    names: tuple[str, ...]

    def select(self, names: Collection[str], read_json: ReadJson) -> set[str]:
        chosen: set[str] = set()
        for entry in self.names:
            for alternative in entry.split("|"):
                pattern = _glob(alternative)
                if found := {name for name in names if pattern.fullmatch(name)}:
                    chosen |= found
                    break
        return chosen


@dataclass(frozen=True)
class Either:
    """``then`` where the repo has ``marker``, else ``otherwise``: a converted export or its source."""

    marker: str
    then: Layout
    otherwise: Layout

    def select(self, names: Collection[str], read_json: ReadJson) -> set[str]:
        return (self.then if self.marker in names else self.otherwise).select(names, read_json)


@dataclass(frozen=True)
class SingleFile:
    """A loader handed one file: the row's ``source.filename`` names it (``select_files`` takes that first)."""

    def select(self, names: Collection[str], read_json: ReadJson) -> set[str]:
        raise NotPullable("this loader reads one file, and the model's source names none (source.filename)")


@dataclass(frozen=True)
class EveryFile:
    """Every file in the repo: for a backend with no row yet."""

    def select(self, names: Collection[str], read_json: ReadJson) -> set[str]:
        return set(names)


TRANSFORMERS = WeightFolders()
DIFFUSERS = DiffusersFolder()
EVERY_FILE = EveryFile()
LORA = NamedFiles(("*.safetensors",))
"""A LoRA repo that names no file: its safetensors at the root, not the sample images beside them."""

LAYOUTS: dict[str, Layout] = {
    "diffusers": DIFFUSERS,
    # LTX-Video, LTX-2 and LTX-2.3 load from their diffusers folders; Lightricks' single-file
    # checkpoints at the repo root (ltx-2-19b-*.safetensors, 27 GB and more each) are never read.
    "diffusers-ltx": DIFFUSERS,
    "diffusers-ltx2": DIFFUSERS,
    "ace-step": DIFFUSERS,
    # modules.json's module folders are named <index>_<Module> (1_Pooling, 2_Dense, ...).
    "sentence-transformers": WeightFolders(("", r"\d+_[^/]+")),
    "transformers-llm": TRANSFORMERS,
    "transformers-vlm": TRANSFORMERS,
    # A CTranslate2 export (model.bin) as faster-whisper reads it, else a transformers Whisper
    # checkpoint, which the loader converts.
    "faster-whisper": Either(
        "model.bin",
        NamedFiles(("model.bin", "config.json", "tokenizer.json", "preprocessor_config.json", "vocabulary.json|vocabulary.txt")),
        TRANSFORMERS,
    ),
    "qwen3-tts": WeightFolders(("", "speech_tokenizer")),
    "chatterbox": NamedFiles(
        (
            "ve.safetensors|ve.pt",
            "t3_mtl23ls_v2.safetensors|t3_mtl23ls_v2.pt",
            "s3gen.safetensors|s3gen.pt",
            "grapheme_mtl_merged_expanded_v1.json",
            "conds.pt",
            "Cangjie5_TC.json",
            "drylocal_geometry.json",
        )
    ),
    "kokoro": NamedFiles(("config.json", "kokoro-v1_0.pth|kokoro-*.pth", "voices/*.pt")),
    "ben2": SingleFile(),
    "briarmbg": SingleFile(),
    "rrdbnet": SingleFile(),
}


def select_files(
    layout: Layout, names: Collection[str], read_json: ReadJson, filename: str | None = None
) -> set[str]:
    """What to fetch of a repo: the one file a source names, else what its layout reads."""
    if filename:
        return {filename} & set(names)
    return layout.select(names, read_json)
