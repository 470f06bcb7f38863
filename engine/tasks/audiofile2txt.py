"""audiofile2txt: the transcript of an uploaded audio file, with Whisper."""

from pathlib import Path
from typing import Annotated

from engine.tasks._checks import Checking, transcription
from engine.tasks._definition import AUDIO_POLLING, McpTool, Task
from engine.tasks._transcription import AUDIO_FILE, PIPELINE, RATE_LIMIT, TranscriptionParams

__all__ = ("TASK",)


class AudioFileParams(TranscriptionParams, kw_only=True):
    audio: Annotated[Path | None, AUDIO_FILE] = None


def check(ctx: Checking) -> None:
    transcription(ctx, upload="audio")


TASK = Task(
    name="audiofile2txt",
    label="Audio File To Text",
    group="analysis",
    inference_type="audio_file2text",
    params=AudioFileParams,
    check=check,
    pipeline=PIPELINE,
    rate_limit=RATE_LIMIT,
    rate_bucket="whisper",
    mcp=McpTool("audio_transcription", AUDIO_POLLING),
    model_required=False,
    inline_result=True,
)
