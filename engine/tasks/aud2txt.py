"""aud2txt: the transcript of an audio URL (an X/Twitter Space), downloaded before Whisper runs."""

from typing import Annotated

from engine.tasks._checks import Checking, transcription
from engine.tasks._definition import AUDIO_POLLING, Form, McpTool, Task
from engine.tasks._transcription import PIPELINE, RATE_LIMIT, TranscriptionParams

__all__ = ("TASK",)


class AudioUrlParams(TranscriptionParams, kw_only=True):
    audio_url: Annotated[str, Form(required=True, kind="url")]


def check(ctx: Checking) -> None:
    transcription(ctx, url_field="audio_url")


TASK = Task(
    name="aud2txt",
    label="Audio To Text",
    group="analysis",
    inference_type="audio2text",
    params=AudioUrlParams,
    check=check,
    pipeline=PIPELINE,
    rate_limit=RATE_LIMIT,
    rate_bucket="whisper",
    mcp=McpTool("audio_url_transcription", AUDIO_POLLING),
    model_required=True,
    inline_result=True,
    download_field="audio_url",
)
