"""Writing video results: H.264 MP4 through PyAV (FFmpeg's libraries; no ffmpeg binary needed)."""

from __future__ import annotations

import io

from engine.tasks._video_frames import X264_OPTIONS

__all__ = ("encode_mp4",)


def encode_mp4(frames, fps: float, audio=None, audio_rate: int | None = None) -> bytes:
    """``frames``: a list of RGB PIL images or an (F, H, W, 3) uint8 array; ``audio``: (channels, samples)
    float32 in -1..1 muxed as AAC when given."""
    import av
    import numpy as np

    arrays = [np.asarray(frame.convert("RGB")) if hasattr(frame, "convert") else np.asarray(frame) for frame in frames]
    height, width = arrays[0].shape[:2]
    buffer = io.BytesIO()
    with av.open(buffer, "w", format="mp4") as container:
        codec = "libx264" if "libx264" in av.codecs_available else "h264"
        video = container.add_stream(codec, rate=round(fps))
        # yuv420p needs even sides; the odd pixel row or column, if any, is cropped.
        video.width, video.height, video.pix_fmt = width - width % 2, height - height % 2, "yuv420p"
        video.options = dict(X264_OPTIONS) if codec == "libx264" else {"crf": "18"}
        # Every stream must exist before the first packet is muxed: MP4 writes its header then.
        sound = None
        if audio is not None and audio_rate:
            sound = container.add_stream("aac", rate=audio_rate, layout="mono" if audio.shape[0] == 1 else "stereo")
        for index, pixels in enumerate(arrays):
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(pixels[: video.height, : video.width]), format="rgb24")
            frame.pts = index
            for packet in video.encode(frame):
                container.mux(packet)
        for packet in video.encode():
            container.mux(packet)
        if sound is not None:
            planar = np.ascontiguousarray(np.clip(audio[:2], -1, 1).astype(np.float32))
            step = 1024
            for start in range(0, planar.shape[1], step):
                piece = av.AudioFrame.from_ndarray(planar[:, start : start + step], format="fltp", layout=sound.layout.name)
                piece.sample_rate = audio_rate
                piece.pts = start
                for packet in sound.encode(piece):
                    container.mux(packet)
            for packet in sound.encode():
                container.mux(packet)
    return buffer.getvalue()
