"""What the transcription tasks (vid2txt, aud2txt, audiofile2txt, videofile2txt) share: their
parameters and one pipeline, Whisper on faster-whisper.

The media is decoded by PyAV inside faster-whisper, so audio tracks of video files need no ffmpeg
binary. Progress follows the docs: 50% once the audio is ready, then up with each decoded segment.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import msgspec

from engine.errors import JobFailure
from engine.rate_limits import Limit
from engine.tasks._definition import SENT, Form, Progress, TaskResult
from model_registry import LoadedModel
from model_registry.kinds import Transcriber

__all__ = ("PIPELINE", "RATE_LIMIT", "TranscriptionParams", "format_timestamp", "transcript_text")

SAMPLE_RATE = 16_000

RATE_LIMIT = Limit(1, 10)
"""The Basic tier's four Whisper routes share one bucket with this limit."""

AUDIO_FILE = Form(required=True, kind="file", file_rule="audio")
VIDEO_FILE = Form(required=True, kind="file", file_rule="video")


class TranscriptionParams(msgspec.Struct, kw_only=True):
    include_ts: Annotated[bool, SENT] = False
    duration_seconds: Annotated[float, Form(price="only")] = 0.0
    """On the price route, the client's own count; on submit, what the checks read from the media."""
    # Where the media is: a route's upload, or the file a URL job's download stage saved.
    audio: Path | None = None
    video: Path | None = None
    source_file: Path | None = None
    media: Path | None = None


def format_timestamp(seconds: float) -> str:
    millis = int(round(seconds * 1000))
    hours, millis = divmod(millis, 3_600_000)
    minutes, millis = divmod(millis, 60_000)
    secs, millis = divmod(millis, 1000)
    return f"{hours:02d}:{minutes:02d}:{secs:02d}.{millis:03d}"


def transcript_text(segments: list[dict[str, Any]], include_ts: bool) -> str:
    if include_ts:
        return "\n".join(
            f"[{format_timestamp(s['start'])} --> {format_timestamp(s['end'])}] {s['text']}" for s in segments
        )
    return " ".join(s["text"] for s in segments if s["text"])


def _decode(path: Path):
    from faster_whisper import decode_audio

    try:
        return decode_audio(str(path), sampling_rate=SAMPLE_RATE)
    except Exception as exc:  # PyAV raises a zoo of errors for unreadable or audio-less media
        raise JobFailure("INVALID_INPUT", f"The media has no readable audio track: {exc}") from exc


class Transcription:
    batchable = False

    def run(self, model: LoadedModel[Transcriber], params: TranscriptionParams, progress: Progress) -> TaskResult:
        media = params.audio or params.video or params.source_file or params.media
        if media is None:
            raise JobFailure("INVALID_INPUT", "The job has no media to transcribe.")
        audio = _decode(media)
        duration = len(audio) / SAMPLE_RATE
        if duration <= 0:
            raise JobFailure("INVALID_INPUT", "The media has no audio track.")
        limit = model.spec.limit("max_video_duration_seconds")
        if limit and duration > float(limit):
            raise JobFailure("INVALID_INPUT", f"The media lasts {duration / 60:.1f} minutes; the limit is {float(limit) / 60:g} minutes.")
        progress(50.0)
        include_ts = bool(params.include_ts)
        segments_iter, info = self._transcribe(model, audio, include_ts)
        segments = []
        for segment in segments_iter:
            segments.append({"start": round(segment.start, 3), "end": round(segment.end, 3), "text": segment.text.strip()})
            progress(50.0 + 50.0 * min(1.0, segment.end / duration))
        text = transcript_text(segments, include_ts)
        meta = {
            "language": info.language,
            "language_probability": round(float(info.language_probability), 4),
            "duration_seconds": round(duration, 3),
            "segments": len(segments),
        }
        if include_ts:
            meta["timestamps"] = segments
        return TaskResult(
            data=(text + "\n").encode("utf-8"),
            filename="transcript.txt",
            content_type="text/plain; charset=utf-8",
            text=text,
            meta=meta,
        )

    @staticmethod
    def _transcribe(model: LoadedModel[Transcriber], audio, include_ts: bool):
        whisper = model.handle
        if model.device.startswith("cuda"):
            # Batched decoding of VAD chunks is several times faster on a GPU; on a CPU the sequential
            # decoder is as fast and keeps the previous text as context.
            from faster_whisper import BatchedInferencePipeline

            batched = model.extras.get("batched")
            if batched is None:
                batched = model.extras["batched"] = BatchedInferencePipeline(model=whisper)
            return batched.transcribe(audio, batch_size=16, without_timestamps=not include_ts)
        return whisper.transcribe(audio, beam_size=5, vad_filter=True, without_timestamps=not include_ts)


PIPELINE = Transcription()

