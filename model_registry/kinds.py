"""What a loaded model's ``handle`` offers, per kind of model: the interfaces loaders implement and the
task pipelines call (``LoadedModel[SpeechModel]``). Structural: a handle need not inherit from them."""

from __future__ import annotations

from typing import Any, Callable, Iterable, Protocol, runtime_checkable

__all__ = ("Embedder", "ImagePipeline", "InstructModel", "OcrReader", "SpeechModel", "Transcriber", "Upscaler")


@runtime_checkable
class ImagePipeline(Protocol):
    """A diffusers pipeline (image, video or music): called with its own keyword arguments."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any: ...


@runtime_checkable
class SpeechModel(Protocol):
    """Every speech backend (Kokoro, Piper, Chatterbox, Qwen3-TTS)."""

    sample_rate: int

    def synthesize(
        self,
        text: str,
        *,
        mode: str | None = "custom_voice",
        voice: str | None = None,
        lang: str | None = None,
        speed: float = 1.0,
        ref_audio: tuple[Any, int] | None = None,
        ref_text: str | None = None,
        instruct: str | None = None,
        seed: int | None = None,
        progress: Callable[[float], None] | None = None,
    ) -> tuple[Any, int]:
        """Mono float32 samples and their rate. ``ref_audio`` is (samples, rate) at :attr:`sample_rate`;
        a handle whose ``native_speed`` is False leaves ``speed`` to the caller's tempo change."""
        ...


@runtime_checkable
class Transcriber(Protocol):
    """faster-whisper's WhisperModel: segments (with ``start``, ``end``, ``text``) and the detected language."""

    def transcribe(self, audio: Any, **options: Any) -> tuple[Iterable[Any], Any]: ...


@runtime_checkable
class OcrReader(Protocol):
    """Every OCR backend: text blocks in reading order, ``{"text", "confidence"?, "box"?}``."""

    def read(self, image: Any, *, language: str | None = None) -> list[dict[str, Any]]: ...


@runtime_checkable
class Embedder(Protocol):
    """A sentence-transformers model."""

    def encode(self, texts: list[str], **options: Any) -> Any: ...


@runtime_checkable
class Upscaler(Protocol):
    """RRDBNet: a torch module taking [0, 1] RGB batches, ``scale`` times larger out."""

    scale: int

    def parameters(self) -> Iterable[Any]: ...

    def __call__(self, batch: Any) -> Any: ...


InstructModel = tuple[Any, Any]
"""A transformers causal LM and its tokenizer (with a chat template)."""
