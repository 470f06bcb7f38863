"""txt2audio: text to speech through whichever voice model the job names.

Every speech backend's handle offers ``synthesize(text, mode=, voice=, lang=, speed=, ref_audio=,
ref_text=, instruct=, seed=, progress=) -> (samples, rate)``; this module decodes the reference audio
(mono float32 at the handle's ``sample_rate``, given as ``(samples, rate)``), changes the tempo for
voices whose handle says ``native_speed = False``, and writes the requested format and sample rate.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from engine.errors import JobFailure
from engine.tasks import Progress, TaskResult
from engine.tasks._audio import change_tempo, decode_audio_file, encode_audio, resample
from model_registry import LoadedModel

__all__ = ("PIPELINE",)


class TextToSpeech:
    batchable = False

    def run(self, model: LoadedModel, params: dict[str, Any], inputs: dict[str, Path], progress: Progress) -> TaskResult:
        reference = inputs.get("ref_audio")
        if isinstance(reference, list):
            reference = reference[0] if reference else None
        speed = float(params.get("speed") or 1.0)
        ref_audio = None
        if reference:
            rate = int(getattr(model.handle, "sample_rate", 24000))
            try:
                ref_audio = (decode_audio_file(Path(reference), rate, 1)[0], rate)
            except Exception as exc:  # PyAV's errors for files that are not audio
                raise JobFailure("INVALID_INPUT", f"The ref_audio file could not be read as audio: {exc}") from exc
        try:
            samples, rate = model.handle.synthesize(
                params["text"],
                mode=params.get("mode", "custom_voice"),
                voice=params.get("voice"),
                lang=params.get("lang"),
                speed=speed,
                ref_audio=ref_audio,
                ref_text=params.get("ref_text"),
                instruct=params.get("instruct"),
                seed=params.get("seed"),
                progress=lambda pct: progress(min(95.0, pct * 0.95)),
            )
        except ValueError as exc:  # what the voice cannot speak is the caller's input, not our failure
            raise JobFailure("INVALID_INPUT", str(exc)) from exc
        if not getattr(model.handle, "native_speed", True):
            samples = change_tempo(samples, rate, speed)
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
