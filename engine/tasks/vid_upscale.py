"""vid-upscale: every frame of a video through Real-ESRGAN x4plus (tiled to the memory budget, as
img-upscale is), at the original frame rate, the sound copied, H.264 MP4 out; progress per frame."""

from __future__ import annotations

from engine.rate_limits import Limit
from engine.tasks._checks import Checking
from engine.tasks._definition import VIDEO_POLLING, McpTool, Progress, Task, TaskResult
from engine.tasks._video_transform import upscale_video, upscaled_output_bytes_estimate
from engine.tasks._video_uploads import VideoUploadParams, check_video_upload
from model_registry import LoadedModel

__all__ = ("MAX_OUTPUT_BYTES", "MAX_OUTPUT_SIDE", "TASK")

MAX_OUTPUT_BYTES = 2 * 1024**3
"""The largest result a job may make (estimated before it is accepted): 2 GiB."""

MAX_OUTPUT_SIDE = 8192
"""H.264's largest picture side at level 6.2; a larger upscale could not be encoded."""

BATCH_FRAMES = 8


def check(ctx: Checking) -> None:
    check_video_upload(ctx)
    if ctx.errors or ctx.values.get("width") is None:
        return
    width, height, frames = ctx.values["width"], ctx.values["height"], ctx.values["frames"]
    scale = 4
    if max(width, height) * scale > MAX_OUTPUT_SIDE:
        ctx.error("video", f"The video is {width}x{height}; upscaled x{scale} it would be {width * scale}x{height * scale}, "
                           f"over the {MAX_OUTPUT_SIDE}-pixel side H.264 can encode.")
        return
    estimate = upscaled_output_bytes_estimate(width, height, frames, ctx.values["fps"], scale=scale)
    if estimate > MAX_OUTPUT_BYTES:
        ctx.error("video", f"The upscaled video would be about {estimate / 1024**2:.0f} MB ({frames} frames of "
                           f"{width * scale}x{height * scale}); the limit is {MAX_OUTPUT_BYTES / 1024**2:.0f} MB.")


class VideoUpscale:
    batchable = False

    def run(self, model: LoadedModel, params: VideoUploadParams, progress: Progress) -> TaskResult:
        return upscale_video(model, params.video, progress, batch_frames=BATCH_FRAMES)


TASK = Task(
    name="vid-upscale",
    label="Video Upscale",
    group="transformation",
    inference_type="vid-upscale",
    params=VideoUploadParams,
    check=check,
    pipeline=VideoUpscale(),
    rate_limit=Limit(1, 15),
    mcp=McpTool("video_upscale", VIDEO_POLLING),
    long_running=True,
)
