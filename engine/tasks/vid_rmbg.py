"""vid-rmbg: the foreground of every frame kept (BEN2, RMBG-1.4 or U²-Net-p masks, as img-rmbg makes
them), as a WebM (VP9 with alpha: what browsers play with transparency), and the matte alone as an
H.264 MP4 (every player and editor opens it) under ``result_alt``; progress per frame."""

from __future__ import annotations

from engine.rate_limits import Limit
from engine.tasks._definition import VIDEO_POLLING, McpTool, Progress, Task, TaskResult
from engine.tasks._video_transform import remove_video_background
from engine.tasks._video_uploads import VideoUploadParams, check_video_upload
from model_registry import LoadedModel

__all__ = ("TASK",)

BATCH_FRAMES = 8


class VideoBackgroundRemoval:
    batchable = False

    def run(self, model: LoadedModel, params: VideoUploadParams, progress: Progress) -> TaskResult:
        return remove_video_background(model, params.video, progress, batch_frames=BATCH_FRAMES)


TASK = Task(
    name="vid-rmbg",
    label="Video Background Removal",
    group="transformation",
    inference_type="vid-rmbg",
    params=VideoUploadParams,
    check=check_video_upload,
    pipeline=VideoBackgroundRemoval(),
    rate_limit=Limit(1, 15),
    mcp=McpTool("video_remove_background", VIDEO_POLLING),
    long_running=True,
)
