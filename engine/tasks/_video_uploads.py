"""What vid-upscale and vid-rmbg share: one uploaded video (the hosted limits: MP4, MPEG, QuickTime,
AVI, WMV, OGG, at most 10 MB), read before the job is accepted to price it and to refuse what cannot run.

Both are priced as their image task is, frame by frame: the model's per-megapixel rate times the
frame's size times the frames. A quote from ``width`` and ``height`` alone (as the SDK and the MCP
server send it) has no length to go on and prices one second at 24 frames a second; ``duration``
(seconds) prices a longer one.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import msgspec

from engine.tasks._checks import Checking, num
from engine.tasks._definition import Form
from engine.tasks._video_frames import probe_video

__all__ = ("QUOTE_FPS", "VideoUploadParams", "check_video_upload")

QUOTE_FPS = 24
"""Frames a second a quote assumes when it is given no video to read."""


class VideoUploadParams(msgspec.Struct, kw_only=True):
    video: Annotated[Path | None, Form(required=True, kind="file", file_rule="short_video")] = None
    width: Annotated[int | None, Form()] = None
    height: Annotated[int | None, Form()] = None
    duration: Annotated[float | None, Form(price="only")] = None
    frames: int = 1
    fps: float = QUOTE_FPS


def check_video_upload(ctx: Checking) -> None:
    """The video's size, frames and rate (read from it, else from the quote's fields), within the model's limits."""
    items = ctx.files.get("video")
    if items:
        probe = probe_video(items[0].data, items[0].filename)
        if probe is None:
            ctx.error("video", "The video field must be a video file that can be decoded.")
            return
        ctx.values.update(width=probe.width, height=probe.height, frames=max(1, probe.frames), fps=float(probe.fps))
    elif ctx.for_price:
        if ctx.values.get("width") is None or ctx.values.get("height") is None:
            ctx.error("video", "The video field is required when width and height are not present.")
            return
        seconds = ctx.values.get("duration") or 1.0
        if seconds <= 0:
            ctx.error("duration", "The duration must be greater than 0.")
            return
        ctx.values.update(frames=max(1, round(seconds * QUOTE_FPS)), fps=float(QUOTE_FPS))
    ctx.values.pop("duration", None)
    for name in ("width", "height"):
        value = ctx.values.get(name)
        if value is not None and not 1 <= value <= 10240:
            ctx.error(name, f"The {name} must be between 1 and 10240.")
    longest = num(ctx.spec.limit("max_video_frames"))
    if longest and ctx.values.get("frames", 1) > longest:
        ctx.error("video", f"The video has {ctx.values['frames']} frames; model {ctx.spec.slug} takes at most {int(longest)}.")
