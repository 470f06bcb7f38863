"""Which loader serves each backend name. Loaders are imported lazily, so listing never imports torch."""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Generic, Protocol, TypeVar

from model_registry.spec import ModelSpec

__all__ = ("BACKENDS", "PLANNED_BACKENDS", "LoadedModel", "Loader", "Parker", "import_loader", "is_available")

BACKENDS: dict[str, str] = {
    "sentence-transformers": "model_registry.loaders.sentence_transformers:load",
    "diffusers": "model_registry.loaders.diffusers:load",
    "rrdbnet": "model_registry.loaders.rrdbnet:load",
    "ben2": "model_registry.loaders.ben2:load",
    # BRIA RMBG-1.4 (IS-Net) on the project's own network code.
    "briarmbg": "model_registry.loaders.briarmbg:load",
    # U²-Net ONNX exports on onnxruntime (rembg's u2netp.onnx, the embedded img-rmbg default).
    "u2net-onnx": "model_registry.loaders.u2net_onnx:load",
    "faster-whisper": "model_registry.loaders.faster_whisper:load",
    "piper": "model_registry.loaders.piper:load",
    "kokoro": "model_registry.loaders.kokoro:load",
    "rapidocr": "model_registry.loaders.rapidocr:load",
    "transformers-llm": "model_registry.loaders.transformers_llm:load",
    # ACE-Step v1.5 is a diffusers pipeline (AceStepPipeline); the diffusers loader serves it.
    "ace-step": "model_registry.loaders.diffusers:load",
    # LTX-Video in the diffusers layout; its condition pipeline is built from the same components.
    "diffusers-ltx": "model_registry.loaders.diffusers:load",
    "transformers-vlm": "model_registry.loaders.transformers_vlm:load",
    # LTX-2 (video with its soundtrack) in the diffusers layout; condition pipelines share its components.
    "diffusers-ltx2": "model_registry.loaders.diffusers:load",
    # Qwen3-TTS 12 Hz on the project's own network code (qwen-tts cannot be installed beside this stack).
    "qwen3-tts": "model_registry.loaders.qwen3_tts:load",
    # Chatterbox Multilingual on the project's own network code (chatterbox-tts pins torch 2.6).
    "chatterbox": "model_registry.loaders.chatterbox:load",
}

# Backends the built-in catalog names whose loaders land with their task family.
PLANNED_BACKENDS: frozenset[str] = frozenset()


class Parker(Protocol):
    """How a loaded model leaves the device for host RAM and comes back (engine/scheduler.py's host tier)."""

    host_bytes: int
    """Host RAM the model takes once parked."""

    def park(self) -> None: ...

    def unpark(self, device: str) -> None: ...


H = TypeVar("H")


@dataclass
class LoadedModel(Generic[H]):
    """A model resident on a device, with the memory it was measured to take there.

    ``parker`` is set by the loaders whose handle can move to host RAM and back (torch modules that are not
    bitsandbytes-quantized). On the CPU every model can be parked: it stays as it is, outside the device
    budget. Elsewhere a model without a parker is dropped when evicted."""

    spec: ModelSpec
    handle: H
    """What the task pipelines call: one of model_registry.kinds' interfaces, by the model's kind."""
    device: str
    memory_bytes: int
    precision: str
    extras: dict[str, Any] = field(default_factory=dict)
    close: Callable[[], None] = lambda: None
    parker: Parker | None = None

    @property
    def parkable(self) -> bool:
        return not self.device.startswith("cuda") or self.parker is not None

    @property
    def park_bytes(self) -> int | None:
        """Host RAM it takes once parked; None where it cannot be parked."""
        if not self.device.startswith("cuda"):
            return self.memory_bytes
        return self.parker.host_bytes if self.parker is not None else None

    def park(self) -> None:
        """Move to host RAM (nothing to do on the CPU)."""
        if self.device.startswith("cuda") and self.parker is not None:
            self.parker.park()

    def unpark(self) -> None:
        """Back onto its device: a host-to-device copy, nothing re-read or re-quantized."""
        if self.device.startswith("cuda") and self.parker is not None:
            self.parker.unpark(self.device)


class Loader(Protocol):
    def __call__(self, spec: ModelSpec, path: Path, device: str) -> LoadedModel: ...


def is_available(backend: str) -> bool:
    return backend in BACKENDS


def import_loader(backend: str) -> Loader:
    module_name, _, attr = BACKENDS[backend].partition(":")
    return getattr(importlib.import_module(module_name), attr)
