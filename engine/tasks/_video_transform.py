"""vid-upscale and vid-rmbg: the image transformations run over every frame of an uploaded video.

Frames stream through in batches (decode, transform, encode), so memory holds one batch however long
the video, and the source's timing and sound carry into the result (see _video_frames).
"""

from __future__ import annotations

import math
from pathlib import Path

from engine.tasks import Progress, TaskResult
from engine.tasks._transform import foreground_mask
from engine.tasks._video_frames import H264_MP4, MATTE_MP4, VP9_ALPHA_WEBM, VideoWriter, frame_batches, read_video
from model_registry import LoadedModel

__all__ = (
    "MATTE_KEY",
    "foreground_mask",
    "remove_video_background",
    "upscale_video",
    "upscaled_output_bytes_estimate",
)

MATTE_KEY = "matte.mp4"
"""The matte's key in ``alt_formats``. The worker stores an alternate as ``result.<key>`` and the result
route types it by its extension, so the key carries ``.mp4`` to be served as video/mp4."""

UPSCALED_BITS_PER_PIXEL = 0.3
"""An upper bound on what x264 at CRF 18 (preset medium) spends per output pixel on upscaled camera footage.

x264 at CRF 18 commonly spends 0.1-0.25 bits per pixel on 1080p camera footage (a rule of thumb, not
measured here), and an upscaled frame holds at most its source's detail spread over scale² pixels, which
takes fewer bits per pixel, not more. Adversarial input (noise the network sharpens) can exceed it, so a
cap checked on this estimate turns away ordinary oversized jobs; it does not bound what a job returns."""

AUDIO_BITS_PER_SECOND = 512_000
"""Above the stereo AAC or MP3 an upload carries (MP3 tops out at 320 kbit/s) and our AAC encoder's
rate; only multichannel AAC at a high rate, copied as it is, can exceed it."""

MP4_BYTES_PER_FRAME = 32
"""MP4's index for one frame: its size, timestamp, offset and sync-sample entries, rounded up."""


def upscaled_output_bytes_estimate(width: int, height: int, frames: int, fps: float, *, scale: int = 4) -> int:
    """An upper-bound estimate of the bytes vid-upscale returns for a ``width`` x ``height`` input of
    ``frames`` frames at ``fps``: ``UPSCALED_BITS_PER_PIXEL`` per output pixel, the sound at
    ``AUDIO_BITS_PER_SECOND``, the MP4 index, and 64 KiB of headers."""
    pixels = (width * scale - width * scale % 2) * (height * scale - height * scale % 2)
    video_bits = pixels * frames * UPSCALED_BITS_PER_PIXEL
    audio_bits = AUDIO_BITS_PER_SECOND * frames / max(float(fps), 1e-3)
    return math.ceil((video_bits + audio_bits) / 8) + frames * MP4_BYTES_PER_FRAME + 65536


def _report(progress: Progress, done: int, total: int) -> None:
    # The count is the container's, which can be short of the frames decoded; 99% waits for the encoder.
    progress(min(99.0, 99.0 * done / max(total, 1)))


# ------------------------------------------------------------------------------------------ upscale


def _upscale_whole_frames(network, frames):
    """(B, H, W, 3) uint8 frames through one forward; the same arithmetic as upscale_array on one tile."""
    import torch

    parameter = next(network.parameters())
    with torch.inference_mode():
        batch = torch.from_numpy(frames).permute(0, 3, 1, 2).to(device=parameter.device, dtype=parameter.dtype) / 255.0
        result = network(batch)
        pixels = (result.float().clamp_(0, 1) * 255.0).round_().to(torch.uint8)
        return pixels.permute(0, 2, 3, 1).cpu().numpy()


def upscale_video(model: LoadedModel, video: Path, progress: Progress, *, batch_frames: int) -> TaskResult:
    """Every frame through Real-ESRGAN, tiled as img-upscale tiles an image, into an H.264 MP4 with the
    source's frame timing and sound.

    Where one tile covers a whole frame, up to ``batch_frames`` frames go through one forward (as many as
    the model's reserve holds): one small frame at a time would leave most of a GPU idle.
    """
    import numpy as np

    from engine.tasks.img_upscale import TILE_PAD, tile_side, upscale_array

    network = model.handle
    side = tile_side(int(model.extras.get("working_bytes", 0)), next(network.parameters()).element_size())
    scale = int(getattr(network, "scale", 4))
    source = read_video(video)
    per_forward = 1
    if max(source.width, source.height) <= side:
        # The reserve holds (side + 2 * TILE_PAD)² input pixels of activations (see tile_side).
        per_forward = max(1, min(batch_frames, (side + 2 * TILE_PAD) ** 2 // (source.width * source.height)))
    done = 0
    with VideoWriter(H264_MP4, source.width * scale, source.height * scale, source.fps, audio_from=video) as writer:
        for batch in frame_batches(video, max(batch_frames, 1)):
            for start in range(0, len(batch.pixels), per_forward):
                chunk = batch.pixels[start : start + per_forward]
                if per_forward > 1:
                    upscaled = _upscale_whole_frames(network, chunk)
                else:
                    upscaled = np.stack([upscale_array(network, np.ascontiguousarray(frame), side) for frame in chunk])
                writer.write(upscaled, batch.times[start : start + per_forward])
                for _ in chunk:
                    done += 1
                    _report(progress, done, source.frames)
        data = writer.close()
    meta = {
        "frames": done,
        "fps": float(source.fps),
        "width": writer.width,
        "height": writer.height,
        "scale": scale,
        "tile_side": side,
        "frames_per_forward": per_forward,
    }
    return TaskResult(data=data, filename="video.mp4", content_type=H264_MP4.content_type, meta=meta)


# ------------------------------------------------------------------------------------------ background


def remove_video_background(model: LoadedModel, video: Path, progress: Progress, *, batch_frames: int) -> TaskResult:
    """Every frame's foreground mask as its alpha: a VP9 WebM with transparency and the source's sound,
    and beside it (``alt_formats[MATTE_KEY]``) the mask alone as a grey H.264 MP4.

    Masks are made one frame at a time by the image path's own functions, so any img-rmbg model works;
    ``batch_frames`` bounds how many frames are decoded and held at once.
    """
    import numpy as np
    from PIL import Image

    source = read_video(video)
    done = 0
    alpha = VideoWriter(VP9_ALPHA_WEBM, source.width, source.height, source.fps, audio_from=video)
    matte = VideoWriter(MATTE_MP4, source.width, source.height, source.fps)
    with alpha, matte:
        for batch in frame_batches(video, max(batch_frames, 1)):
            masks = []
            for frame in batch.pixels:
                masks.append(np.asarray(foreground_mask(model, Image.fromarray(frame)), dtype=np.uint8))
                done += 1
                _report(progress, done, source.frames)
            masks = np.stack(masks)
            # Straight (unpremultiplied) colour under the alpha, as PNG cut-outs have it.
            alpha.write(np.concatenate([batch.pixels, masks[..., None]], axis=-1), batch.times)
            matte.write(masks, batch.times)
        data, matte_data = alpha.close(), matte.close()
    meta = {"frames": done, "fps": float(source.fps), "width": alpha.width, "height": alpha.height}
    return TaskResult(
        data=data,
        filename="video.webm",
        content_type=VP9_ALPHA_WEBM.content_type,
        alt_formats={MATTE_KEY: matte_data},
        meta=meta,
    )
