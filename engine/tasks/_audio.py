"""Encoding audio results: the formats txt2audio and txt2music offer, at the rate the request asked."""

from __future__ import annotations

import io

__all__ = ("CONTENT_TYPES", "change_tempo", "decode_audio_file", "encode_audio", "resample")

CONTENT_TYPES = {"wav": "audio/wav", "flac": "audio/flac", "ogg": "audio/ogg", "mp3": "audio/mpeg"}
_SOUNDFILE = {"wav": ("WAV", "PCM_16"), "flac": ("FLAC", "PCM_16"), "ogg": ("OGG", "VORBIS"), "mp3": ("MP3", "MPEG_LAYER_III")}


def resample(samples, rate: int, target: int):
    """Band-limited resampling (polyphase), so a requested sample rate never aliases."""
    if rate == target:
        return samples
    import math

    from scipy.signal import resample_poly

    common = math.gcd(rate, target)
    return resample_poly(samples, target // common, rate // common, axis=0).astype("float32")


def encode_audio(samples, rate: int, fmt: str) -> tuple[bytes, str]:
    """(bytes, content type); ``samples`` is float32 in -1..1, mono (N,) or (N, channels)."""
    import numpy as np
    import soundfile

    container, subtype = _SOUNDFILE[fmt]
    buffer = io.BytesIO()
    soundfile.write(buffer, np.clip(samples, -1.0, 1.0), rate, format=container, subtype=subtype)
    return buffer.getvalue(), CONTENT_TYPES[fmt]


def decode_audio_file(path, rate: int, channels: int):
    """Any audio PyAV (FFmpeg) reads, as float32 of shape (channels, samples) at ``rate``."""
    import av
    import numpy as np

    layout = "mono" if channels == 1 else "stereo"
    resampler = av.AudioResampler(format="fltp", layout=layout, rate=rate)
    pieces = []
    with av.open(str(path)) as container:
        stream = next((s for s in container.streams if s.type == "audio"), None)
        if stream is None:
            raise ValueError("The file has no audio track.")
        for frame in container.decode(stream):
            pieces += [f.to_ndarray() for f in resampler.resample(frame)]
        pieces += [f.to_ndarray() for f in resampler.resample(None)]
    if not pieces:
        raise ValueError("The audio file is empty.")
    return np.concatenate(pieces, axis=1).astype(np.float32)


def change_tempo(samples, rate: int, speed: float):
    """Mono float32 ``samples`` played ``speed`` times as fast at the same pitch: FFmpeg's atempo (WSOLA),
    whose 0.5-2.0 range is the range dryAPI offers, for voices that have no speed control of their own."""
    from fractions import Fraction

    import av
    import numpy as np

    if abs(speed - 1.0) < 1e-3 or len(samples) == 0:
        return samples
    graph = av.filter.Graph()
    source = graph.add_abuffer(format="flt", sample_rate=rate, layout="mono", time_base=Fraction(1, rate))
    stretch = graph.add("atempo", f"{min(2.0, max(0.5, speed)):.4f}")
    sink = graph.add("abuffersink")
    source.link_to(stretch)
    stretch.link_to(sink)
    graph.configure()
    frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(samples, dtype=np.float32).reshape(1, -1), format="flt", layout="mono")
    frame.sample_rate, frame.pts, frame.time_base = rate, 0, Fraction(1, rate)
    graph.push(frame)
    graph.push(None)
    pieces = []
    while True:
        try:
            pieces.append(graph.pull().to_ndarray().reshape(-1))
        except (EOFError, av.error.BlockingIOError):
            break
    return np.concatenate(pieces).astype(np.float32) if pieces else samples[:0]
