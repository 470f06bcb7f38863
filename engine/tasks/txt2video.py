"""txt2video: a prompt to an MP4 (LTX-Video, LTX-2 with its own soundtrack)."""

from engine.rate_limits import Limit
from engine.tasks._definition import VIDEO_POLLING, McpTool, Task
from engine.tasks._video_generation import PIPELINE, VideoParams, check

__all__ = ("TASK",)


class TextToVideoParams(VideoParams, kw_only=True):
    pass


TASK = Task(
    name="txt2video",
    label="Text To Video",
    group="generation",
    inference_type="txt2video",
    params=TextToVideoParams,
    check=check,
    pipeline=PIPELINE,
    rate_limit=Limit(1, 15),
    mcp=McpTool("text_to_video", VIDEO_POLLING),
    long_running=True,
)
