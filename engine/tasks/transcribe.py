"""transcribe: the unified transcription route the deAPI SDK recommends (``client.transcription.create``).

One of ``source_url`` or ``source_file``. What the source is decides how it is handled, as the SDK
documents: an X/Twitter Spaces URL is audio, any other URL is video (both downloaded before Whisper
runs), and an uploaded file is audio or video by its content, not its name. The same Whisper
pipeline, limits and prices as the four single-source routes.
"""

from pathlib import Path
from typing import Annotated
from urllib.parse import urlsplit

from engine.media import has_video_track
from engine.tasks._checks import Checking, transcription
from engine.tasks._definition import AUDIO_POLLING, Form, McpTool, Progress, Task, TaskResult
from engine.tasks._transcription import PIPELINE, RATE_LIMIT, TranscriptionParams
from model_registry import LoadedModel
from model_registry.kinds import Transcriber

__all__ = ("TASK", "source_kind")


class TranscribeParams(TranscriptionParams, kw_only=True):
    source_url: Annotated[str | None, Form(kind="url")] = None
    source_file: Annotated[Path | None, Form(kind="file", file_rule="media")] = None
    source: str = "video_url"
    """What the source was found to be: audio_url, video_url, audio_file or video_file."""


def source_kind(url: str | None, file_data: bytes | None) -> str:
    if file_data is not None:
        return "video_file" if has_video_track(file_data) else "audio_file"
    parts = urlsplit(url or "")
    host = (parts.hostname or "").removeprefix("www.").removeprefix("mobile.")
    spaces = host in ("x.com", "twitter.com") and parts.path.startswith("/i/spaces/")
    return "audio_url" if spaces else "video_url"


def check(ctx: Checking) -> None:
    url, files = ctx.values.get("source_url"), ctx.files.get("source_file")
    if url and files:
        ctx.error("source_url", "The source url field prohibits source file from being present.")
        return
    if not url and not files and not ctx.for_price and "source_url" not in ctx.errors and "source_file" not in ctx.errors:
        ctx.error("source_url", "The source url field is required when source file is not present.")
        return
    ctx.values["source"] = source_kind(url, files[0].data if files else None)
    transcription(ctx, upload="source_file" if files else None, url_field="source_url")


class UnifiedTranscription:
    batchable = False

    def run(self, model: LoadedModel[Transcriber], params: TranscribeParams, progress: Progress) -> TaskResult:
        result = PIPELINE.run(model, params, progress)
        result.meta["source"] = params.source
        return result


TASK = Task(
    name="transcribe",
    label="Transcription",
    group="analysis",
    inference_type="video2text",
    params=TranscribeParams,
    check=check,
    pipeline=UnifiedTranscription(),
    rate_limit=RATE_LIMIT,
    rate_bucket="whisper",
    mcp=McpTool("transcription", AUDIO_POLLING),
    model_required=False,
    inline_result=True,
    download_field="source_url",
)
