"""txt2audio: text to speech through whichever voice model the job names.

Every speech backend's handle offers ``synthesize(text, mode=, voice=, lang=, speed=, ref_audio=,
ref_text=, instruct=, progress=) -> (samples, rate)``; this module turns that into the requested
format and sample rate.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from engine.errors import JobFailure
from engine.tasks import Progress, TaskResult
from engine.tasks._audio import encode_audio, resample
from model_registry import LoadedModel

__all__ = ("PIPELINE",)


class TextToSpeech:
    batchable = False

    def run(self, model: LoadedModel, params: dict[str, Any], inputs: dict[str, Path], progress: Progress) -> TaskResult:
        ref_audio = inputs.get("ref_audio")
        try:
            samples, rate = model.handle.synthesize(
                params["text"],
                mode=params.get("mode", "custom_voice"),
                voice=params.get("voice"),
                lang=params.get("lang"),
                speed=float(params.get("speed") or 1.0),
                ref_audio=Path(ref_audio[0] if isinstance(ref_audio, list) else ref_audio) if ref_audio else None,
                ref_text=params.get("ref_text"),
                instruct=params.get("instruct"),
                seed=params.get("seed"),
                progress=lambda pct: progress(min(95.0, pct * 0.95)),
            )
        except ValueError as exc:  # what the voice cannot speak is the caller's input, not our failure
            raise JobFailure("INVALID_INPUT", str(exc)) from exc
        target = int(params.get("sample_rate") or rate)
        samples = resample(samples, rate, target)
        fmt = params.get("format") or "wav"
        data, content_type = encode_audio(samples, target, fmt)
        return TaskResult(
            data=data,
            filename=f"speech.{fmt}",
            content_type=content_type,
            meta={"sample_rate": target, "duration_seconds": round(len(samples) / target, 3), "format": fmt},
        )


PIPELINE = TextToSpeech()
