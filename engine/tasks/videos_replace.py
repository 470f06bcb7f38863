"""videos/replace: the person in a video replaced by the character of a reference image (Wan2.2-Animate's
replacement mode), as the deAPI SDK's ``client.video.replace`` calls it. Its price route is
``videos/replace/price``, not ``/price-calculation``: the SDK's own spelling.

Priced as the video models are, per second of output at its size and steps: from the uploaded video's
length, or, for a quote without it, from ``duration`` (seconds).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import msgspec

from engine.rate_limits import Limit
from engine.tasks._checks import Checking, dimensions, fmt, num, seed, steps
from engine.tasks._definition import VIDEO_POLLING, SENT, Form, McpTool, Progress, Task, TaskResult
from engine.tasks._video_frames import probe_video
from engine.tasks._wan_animate import MAX_FPS, replace_character
from model_registry import LoadedModel
from model_registry.kinds import ImagePipeline

__all__ = ("TASK", "VideoReplaceParams")


class VideoReplaceParams(msgspec.Struct, kw_only=True):
    video: Annotated[Path | None, Form(required=True, kind="file", file_rule="video")] = None
    ref_image: Annotated[Path | None, Form(required=True, kind="file", file_rule="image", price="no")] = None
    prompt: Annotated[str | None, Form(price="no")] = None
    width: Annotated[int | None, SENT] = None
    height: Annotated[int | None, SENT] = None
    steps: Annotated[int, SENT]
    seed: Annotated[int, SENT]
    duration: Annotated[float | None, Form(price="only")] = None
    frames: int = 1
    fps: float = MAX_FPS


def check(ctx: Checking) -> None:
    values = ctx.values
    if (values.get("width") is None) != (values.get("height") is None):
        missing = "height" if values.get("height") is None else "width"
        present = "width" if missing == "height" else "height"
        ctx.error(missing, f"The {missing} field is required when {present} is present.")
    items = ctx.files.get("video")
    seconds = values.pop("duration", None)
    if items:
        probe = probe_video(items[0].data, items[0].filename)
        if probe is None:
            ctx.error("video", "The video field must be a video file that can be decoded.")
            return
        seconds, fps = probe.duration, min(float(probe.fps), MAX_FPS)
        if values.get("width") is None and values.get("height") is None:
            values["width"], values["height"] = _fitted(ctx, probe.width, probe.height)
    elif ctx.for_price:
        if seconds is None:
            ctx.error("video", "The video field is required when duration is not present.")
            return
        fps = MAX_FPS
    else:
        return  # the required video's own error is already there
    if seconds is None or seconds <= 0:
        ctx.error("video" if items else "duration", "The video must last more than 0 seconds.")
        return
    longest = num(ctx.spec.limit("max_video_duration_seconds"))
    if longest and seconds > longest:
        ctx.error("video" if items else "duration", f"The video may last at most {fmt(longest)} seconds; it lasts {seconds:.1f}.")
    values.update(frames=max(1, round(seconds * fps)), fps=fps)
    dimensions(ctx, required=True)
    steps(ctx)
    seed(ctx)


def _fitted(ctx: Checking, width: int, height: int) -> tuple[int, int]:
    """The video's own size, scaled (aspect kept) into the model's sides: down to the largest, else up to
    the smallest (the reference image may be any size: the pipeline fits it)."""
    most_w, most_h = num(ctx.spec.limit("max_width")) or width, num(ctx.spec.limit("max_height")) or height
    least_w, least_h = num(ctx.spec.limit("min_width")) or 1, num(ctx.spec.limit("min_height")) or 1
    scale = min(1.0, most_w / width, most_h / height)
    if width * scale < least_w or height * scale < least_h:
        scale = min(max(least_w / width, least_h / height), most_w / width, most_h / height)
    return max(1, round(width * scale)), max(1, round(height * scale))


class VideoReplace:
    batchable = False

    def run(self, model: LoadedModel[ImagePipeline], params: VideoReplaceParams, progress: Progress) -> TaskResult:
        data, meta = replace_character(
            model.handle,
            video=params.video,
            ref_image=params.ref_image,
            prompt=params.prompt,
            width=params.width,
            height=params.height,
            steps=params.steps,
            seed=params.seed,
            progress=progress,
        )
        return TaskResult(data=data, filename="video.mp4", content_type="video/mp4", meta=meta)


TASK = Task(
    name="videos/replace",
    label="Video Character Replacement",
    group="generation",
    inference_type="video-replace",
    params=VideoReplaceParams,
    check=check,
    pipeline=VideoReplace(),
    rate_limit=Limit(1, 15),
    mcp=McpTool("video_replace", VIDEO_POLLING),
    long_running=True,
    price_route="price",
)
