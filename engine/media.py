"""Inspecting uploads before a job is accepted: image size, media duration, content matching the type."""

from __future__ import annotations

import io
import json
import shutil
import subprocess
import tempfile
import wave
from pathlib import Path

__all__ = ("has_audio_track", "has_video_track", "image_size", "media_duration")


def image_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) if ``data`` decodes as an image, else None."""
    try:
        from PIL import Image
    except ImportError:  # pragma: no cover - Pillow is a core dependency
        return None
    try:
        with Image.open(io.BytesIO(data)) as image:
            image.verify()
            return image.size
    except Exception:
        return None


def _open_with_av(data: bytes):
    try:
        import av
    except ImportError:  # the audio extra brings PyAV; without it ffprobe answers
        return None
    try:
        return av.open(io.BytesIO(data))
    except Exception:
        return None


def has_audio_track(data: bytes) -> bool | None:
    """Whether the media holds an audio stream; None when that cannot be read here."""
    container = _open_with_av(data)
    if container is None:
        return None
    with container:
        return any(stream.type == "audio" for stream in container.streams)


def has_video_track(data: bytes) -> bool | None:
    """Whether the media holds a moving picture (a cover image in an audio file does not count); None
    when that cannot be read here."""
    container = _open_with_av(data)
    if container is None:
        return None
    with container:
        return any(stream.type == "video" and not _is_cover_art(stream) for stream in container.streams)


def _is_cover_art(stream) -> bool:
    import av

    return bool(stream.disposition & av.stream.Disposition.attached_pic)


def media_duration(data: bytes, filename: str) -> float | None:
    """Seconds of audio/video: the stdlib for WAV, PyAV or ffprobe for the rest."""
    if filename.lower().endswith(".wav"):
        try:
            with wave.open(io.BytesIO(data)) as wav:
                return wav.getnframes() / float(wav.getframerate())
        except (wave.Error, EOFError):
            pass
    container = _open_with_av(data)
    if container is not None:
        with container:
            if container.duration:
                return container.duration / 1_000_000
            seconds = [float(s.duration * s.time_base) for s in container.streams if s.duration and s.time_base]
            if seconds:
                return max(seconds)
    if shutil.which("ffprobe") is None:
        return None
    with tempfile.NamedTemporaryFile(suffix=Path(filename).suffix) as handle:
        handle.write(data)
        handle.flush()
        try:
            out = subprocess.run(
                ["ffprobe", "-v", "error", "-show_entries", "format=duration", "-of", "json", handle.name],
                capture_output=True,
                timeout=30,
                check=True,
            ).stdout
            return float(json.loads(out)["format"]["duration"])
        except (subprocess.SubprocessError, KeyError, ValueError):
            return None
