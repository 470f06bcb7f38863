"""img2video: a first frame (and, where the model takes one, a last frame) and a prompt to an MP4."""

from pathlib import Path
from typing import Annotated

from engine.rate_limits import Limit
from engine.tasks._definition import VIDEO_POLLING, Form, McpTool, Task
from engine.tasks._video_generation import IMAGE_NOT_PRICED, PIPELINE, VideoParams, check

__all__ = ("TASK",)


class ImageToVideoParams(VideoParams, kw_only=True):
    first_frame_image: Annotated[Path | None, Form(required=True, kind="file", file_rule="image", price="no")] = None
    last_frame_image: Annotated[Path | None, IMAGE_NOT_PRICED] = None


TASK = Task(
    name="img2video",
    label="Image To Video",
    group="generation",
    inference_type="img2video",
    params=ImageToVideoParams,
    check=check,
    pipeline=PIPELINE,
    rate_limit=Limit(1, 15),
    mcp=McpTool("image_to_video", VIDEO_POLLING),
    long_running=True,
)
