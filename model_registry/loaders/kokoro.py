"""Kokoro-82M (hexgrad/Kokoro-82M): StyleTTS 2 + iSTFTNet text to speech at 24 kHz, run by the ``kokoro`` package.

The folder is the hub repository's layout: ``config.json``, ``kokoro-v1_0.pth`` and ``voices/<voice>.pt``
(one (510, 1, 256) style pack per voice; the row used is the phoneme string's length minus one).

Phonemes come from misaki, as in kokoro's own pipeline, but without anything fetched at run time:
English uses misaki's English G2P when spaCy's ``en_core_web_sm`` is installed, else misaki's espeak-ng
English mapping (the same IPA-to-misaki rewrite misaki applies to its out-of-dictionary words); the
other languages use misaki's ``EspeakG2P``, exactly as kokoro does. espeak-ng itself comes bundled
by ``espeakng-loader``. A voice's first letter is Kokoro's language code (``af_heart``: a = US English).
"""

from __future__ import annotations

import gc
import re
import threading
import unicodedata
import warnings
from pathlib import Path
from typing import Callable

from model_registry.backends import LoadedModel
from model_registry.loaders._memory import measured_load, module_bytes
from model_registry.spec import ModelSpec

__all__ = ("KokoroVoices", "load")

SAMPLE_RATE = 24000

# dryAPI lang slug -> (Kokoro language code, espeak-ng language).
LANGUAGES: dict[str, tuple[str, str]] = {
    "en-us": ("a", "en-us"),
    "en-gb": ("b", "en-gb"),
    "es": ("e", "es"),
    "fr-fr": ("f", "fr-fr"),
    "hi": ("h", "hi"),
    "it": ("i", "it"),
    "pt-br": ("p", "pt-br"),
    "ja": ("j", "ja"),
    "zh": ("z", "zh"),
}
_BY_CODE = {code: slug for slug, (code, _) in LANGUAGES.items()}
_VOICE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
# Where a too-long phoneme string may be cut, best first: sentence ends, clause marks, word gaps.
_BREAKS = (re.compile(r"(?<=[.!?…])\s+"), re.compile(r"(?<=[,;:—])\s+"), re.compile(r"\s+"))
_PUNCTUATION = set(';:,.!?—…"()“” ')


def _english_g2p(british: bool) -> Callable[[str], str]:
    from misaki.espeak import EspeakFallback

    fallback = EspeakFallback(british=british)
    try:
        import spacy

        has_tagger = spacy.util.is_package("en_core_web_sm")
    except Exception:
        has_tagger = False
    if has_tagger:
        from misaki import en

        g2p = en.G2P(trf=False, british=british, fallback=fallback, unk="")
        return lambda text: g2p(text)[0] or ""

    class _Token:
        def __init__(self, text: str) -> None:
            self.text = text

    return lambda text: fallback(_Token(text))[0] or ""


def _espeak_g2p(language: str) -> Callable[[str], str]:
    from misaki.espeak import EspeakG2P

    try:
        g2p = EspeakG2P(language=language)
    except RuntimeError as exc:  # phonemizer: "language ... is not supported by the espeak backend"
        raise ValueError(f"Kokoro cannot phonemize the language {language!r}: {exc}") from exc
    return lambda text: g2p(text)[0] or ""


def _split(phonemes: str, limit: int, level: int = 0) -> list[str]:
    """``phonemes`` in pieces of at most ``limit`` symbols, cut at the best breaks available."""
    if len(phonemes) <= limit:
        return [phonemes]
    if level == len(_BREAKS):
        return [phonemes[i : i + limit] for i in range(0, len(phonemes), limit)]
    pieces: list[str] = []
    current = ""
    for part in _BREAKS[level].split(phonemes):
        if not part:
            continue
        for piece in _split(part, limit, level + 1) if len(part) > limit else [part]:
            if current and len(current) + 1 + len(piece) <= limit:
                current += " " + piece
            else:
                if current:
                    pieces.append(current)
                current = piece
    if current:
        pieces.append(current)
    return pieces


class KokoroVoices:
    """The loaded model with its voice packs; ``synthesize`` is what txt2audio calls."""

    def __init__(self, model, path: Path, device: str) -> None:
        self.model = model
        self.path = path
        self.device = device
        self.sample_rate = SAMPLE_RATE
        self.vocab: dict[str, int] = model.vocab
        self.max_phonemes = int(model.context_length) - 2  # the text is framed by two pad tokens
        self._packs: dict[str, object] = {}
        self._g2p: dict[str, Callable[[str], str]] = {}
        self._lock = threading.Lock()

    def voices(self) -> list[str]:
        return sorted(p.stem for p in (self.path / "voices").glob("*.pt"))

    def _pack(self, voice: str):
        import torch

        if voice not in self._packs:
            file = self.path / "voices" / f"{voice}.pt"
            if not _VOICE_NAME.match(voice) or not file.is_file():
                raise ValueError(f"Kokoro has no voice {voice!r} installed (found: {', '.join(self.voices()) or 'none'}).")
            self._packs[voice] = torch.load(file, map_location="cpu", weights_only=True).float().to(self.device)
        return self._packs[voice]

    def _phonemizer(self, lang: str) -> Callable[[str], str]:
        if lang not in self._g2p:
            code, language = LANGUAGES.get(lang, ("", lang))
            if code in ("a", "b"):
                self._g2p[lang] = _english_g2p(british=code == "b")
            elif code in ("j", "z"):
                raise ValueError(f"Kokoro's {lang} voices need misaki's {lang} G2P, which this build does not include.")
            else:
                self._g2p[lang] = _espeak_g2p(language)
        return self._g2p[lang]

    def phonemize(self, text: str, lang: str) -> list[str]:
        """The text as phoneme strings the model can take in one pass each (only symbols it knows)."""
        g2p = self._phonemizer(lang)
        chunks: list[str] = []
        for paragraph in re.split(r"\s*\n\s*", unicodedata.normalize("NFC", text)):
            if not paragraph.strip():
                continue
            phonemes = "".join(symbol for symbol in g2p(paragraph) if symbol in self.vocab)
            phonemes = re.sub(r"\s+", " ", phonemes).strip()
            chunks += [c.strip() for c in _split(phonemes, self.max_phonemes) if not set(c) <= _PUNCTUATION]
        return chunks

    def speak(self, phonemes: str, voice: str, speed: float = 1.0):
        """Audio (float32 numpy, -1..1) for one phoneme string of at most ``max_phonemes`` symbols."""
        import numpy as np

        pack = self._pack(voice)
        audio = self.model(phonemes, pack[len(phonemes) - 1], speed=speed)
        return np.clip(audio.float().cpu().numpy().reshape(-1), -1.0, 1.0).astype(np.float32)

    def synthesize(
        self,
        text: str,
        *,
        mode: str = "custom_voice",
        voice: str | None = None,
        lang: str | None = None,
        speed: float = 1.0,
        ref_audio: tuple | None = None,
        ref_text: str | None = None,
        instruct: str | None = None,
        seed: int | None = None,
        progress: Callable[[float], None] | None = None,
    ):
        import contextlib

        import numpy as np
        import torch

        if mode not in (None, "custom_voice"):
            raise ValueError(f"Kokoro speaks only with its preset voices (custom_voice), not in the {mode} mode.")
        if not voice:
            raise ValueError("Kokoro needs a voice, e.g. af_heart.")
        lang = lang or _BY_CODE.get(voice[:1].lower())
        if not lang:
            raise ValueError(f"No language given, and the voice {voice!r} does not name one.")
        with self._lock:
            self._pack(voice)  # an unknown voice fails before any phonemizing
            chunks = self.phonemize(text, lang)
            if not chunks:
                raise ValueError("The text has nothing to speak.")
            # The decoder's harmonic source draws noise; a seed makes the result repeatable.
            devices = [torch.device(self.device)] if self.device.startswith("cuda") else []
            forked = torch.random.fork_rng(devices=devices) if seed is not None else contextlib.nullcontext()
            pieces = []
            with forked:
                if seed is not None:
                    torch.manual_seed(int(seed))
                for index, phonemes in enumerate(chunks):
                    pieces.append(self.speak(phonemes, voice, speed))
                    if progress is not None:
                        progress(100.0 * (index + 1) / len(chunks))
        return np.concatenate(pieces), self.sample_rate


def load(spec: ModelSpec, path: Path, device: str) -> LoadedModel:
    import torch
    from loguru import logger

    from kokoro.model import KModel

    logger.disable("kokoro")  # kokoro logs every forward pass (phonemes, durations) at debug level
    folder = path if path.is_dir() else path.parent
    config, weights = folder / "config.json", folder / KModel.MODEL_NAMES["hexgrad/Kokoro-82M"]
    if not weights.is_file():
        found = sorted(folder.glob("kokoro-*.pth"))
        if not found:
            raise FileNotFoundError(f"no Kokoro checkpoint (kokoro-v1_0.pth) in {folder}")
        weights = found[0]
    if not config.is_file():
        raise FileNotFoundError(f"no Kokoro config.json in {folder}")
    with measured_load(device) as measured, warnings.catch_warnings():
        # kokoro's own modules: a one-layer LSTM given dropout, and the old weight_norm API.
        warnings.filterwarnings("ignore", message="dropout option adds dropout")
        warnings.filterwarnings("ignore", message=".*weight_norm.* is deprecated")
        # With both files given KModel reads them and never touches the hub.
        model = KModel(repo_id="hexgrad/Kokoro-82M", config=str(config), model=str(weights))
        model = model.to(device).eval()
    memory = measured["cuda_bytes"] or module_bytes(model)
    handle = KokoroVoices(model, folder, device)

    def close() -> None:
        handle.model = None
        handle._packs.clear()
        gc.collect()
        if device.startswith("cuda"):
            torch.cuda.empty_cache()

    return LoadedModel(
        spec=spec,
        handle=handle,
        device=device,
        memory_bytes=max(memory, spec.vram_bytes),
        precision="fp32",
        extras={"sample_rate": SAMPLE_RATE, "weights_path": str(weights), "voices": handle.voices()},
        close=close,
    )
