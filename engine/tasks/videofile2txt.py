"""videofile2txt: the transcript of the sound of an uploaded video file, with Whisper."""

from pathlib import Path
from typing import Annotated

from engine.tasks._checks import Checking, transcription
from engine.tasks._definition import AUDIO_POLLING, McpTool, Task
from engine.tasks._transcription import VIDEO_FILE, PIPELINE, RATE_LIMIT, TranscriptionParams

__all__ = ("TASK",)


class VideoFileParams(TranscriptionParams, kw_only=True):
    video: Annotated[Path | None, VIDEO_FILE] = None


def check(ctx: Checking) -> None:
    transcription(ctx, upload="video")


TASK = Task(
    name="videofile2txt",
    label="Video File To Text",
    group="analysis",
    inference_type="video_file2text",
    params=VideoFileParams,
    check=check,
    pipeline=PIPELINE,
    rate_limit=RATE_LIMIT,
    rate_bucket="whisper",
    mcp=McpTool("video_file_transcription", AUDIO_POLLING),
    model_required=False,
    inline_result=True,
)
