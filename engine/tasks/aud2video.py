"""aud2video (LTX-2): the picture generated to a given soundtrack, which the MP4 carries unchanged."""

from pathlib import Path
from typing import Annotated

from engine.rate_limits import Limit
from engine.tasks._definition import VIDEO_POLLING, Form, McpTool, Task
from engine.tasks._video_generation import IMAGE_NOT_PRICED, PIPELINE, VideoParams, check

__all__ = ("TASK",)


class AudioToVideoParams(VideoParams, kw_only=True):
    audio: Annotated[Path | None, Form(required=True, kind="file", file_rule="video_audio", price="no")] = None
    first_frame_image: Annotated[Path | None, IMAGE_NOT_PRICED] = None
    last_frame_image: Annotated[Path | None, IMAGE_NOT_PRICED] = None


TASK = Task(
    name="aud2video",
    label="Audio To Video",
    group="generation",
    inference_type="aud2video",
    params=AudioToVideoParams,
    check=check,
    pipeline=PIPELINE,
    rate_limit=Limit(1, 15),
    mcp=McpTool("audio_to_video", VIDEO_POLLING),
    long_running=True,
)
