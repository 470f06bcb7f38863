"""vid2txt: the transcript of a video's URL (a video site's page or a file), downloaded before Whisper runs."""

from typing import Annotated

from engine.tasks._checks import Checking, transcription
from engine.tasks._definition import AUDIO_POLLING, Form, McpTool, Task
from engine.tasks._transcription import PIPELINE, RATE_LIMIT, TranscriptionParams

__all__ = ("TASK",)


class VideoUrlParams(TranscriptionParams, kw_only=True):
    video_url: Annotated[str, Form(required=True, kind="url")]


def check(ctx: Checking) -> None:
    transcription(ctx, url_field="video_url")


TASK = Task(
    name="vid2txt",
    label="Video To Text",
    group="analysis",
    inference_type="video2text",
    params=VideoUrlParams,
    check=check,
    pipeline=PIPELINE,
    rate_limit=RATE_LIMIT,
    rate_bucket="whisper",
    mcp=McpTool("video_url_transcription", AUDIO_POLLING),
    model_required=False,
    inline_result=True,
    download_field="video_url",
)
