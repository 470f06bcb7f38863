"""txt2audio: text to speech through whichever voice model the job names.

Every speech backend's handle offers ``synthesize(text, mode=, voice=, lang=, speed=, ref_audio=,
ref_text=, instruct=, seed=, progress=) -> (samples, rate)``; this module decodes the reference audio
(mono float32 at the handle's ``sample_rate``, given as ``(samples, rate)``), changes the tempo for
voices whose handle says ``native_speed = False``, and writes the requested format and sample rate.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import msgspec

from engine.errors import JobFailure
from engine.media import media_duration
from engine.rate_limits import Limit
from engine.tasks._audio import change_tempo, decode_audio_file, encode_audio, resample
from engine.tasks._checks import Checking, fmt, num
from engine.tasks._definition import AUDIO_POLLING, SENT, Form, McpTool, Progress, Task, TaskResult
from model_registry import LoadedModel
from model_registry.kinds import SpeechModel

__all__ = ("TASK", "TextToSpeechParams")

AUDIO_FORMATS = ("mp3", "wav", "flac", "ogg")


class TextToSpeechParams(msgspec.Struct, kw_only=True):
    text: Annotated[str, Form(required=True)]
    count_text: Annotated[int | None, Form(price="only")] = None
    lang: Annotated[str | None, SENT] = None
    format: Annotated[str | None, Form(choices=AUDIO_FORMATS)] = None
    speed: Annotated[float | None, SENT] = None
    sample_rate: Annotated[float | None, SENT] = None
    mode: Annotated[str, Form(choices=("custom_voice", "voice_clone", "voice_design"))] = "custom_voice"
    voice: Annotated[str | None, SENT] = None
    ref_text: Annotated[str | None, Form(price="no")] = None
    instruct: Annotated[str | None, SENT] = None
    ref_audio: Annotated[Path | None, Form(kind="file", file_rule="voice_reference", price="no")] = None
    seed: int | None = None


def check(ctx: Checking) -> None:
    values, spec = ctx.values, ctx.spec
    if ctx.for_price:
        if values.get("text") is None and values.get("count_text") is None:
            ctx.errors.pop("text", None)
            ctx.error("text", "The text field is required when count text is not present.")
        elif "text" in ctx.errors and values.get("count_text") is not None:
            ctx.errors.pop("text")
        # Quotes may exceed one job's text limit (the docs price a million characters); never below 1.
        if values.get("count_text") is not None and values["count_text"] < 1:
            ctx.error("count_text", "The count text field must be at least 1.")
    for name in ("lang", "format", "speed", "sample_rate", "voice"):
        ctx.default(name)
    values.setdefault("mode", "custom_voice")
    text = values.get("text")
    if text is not None:
        low, high = num(spec.limit("min_text")), num(spec.limit("max_text"))
        if (low and len(text) < low) or (high and len(text) > high):
            ctx.error("text", f"The text must be between {fmt(low)} and {fmt(high)} characters.")
    ctx.between("speed", "min_speed", "max_speed")
    ratios = spec.limit("available_ratios")
    if ratios and values.get("sample_rate") is not None and int(values["sample_rate"]) not in [int(r) for r in ratios]:
        ctx.error("sample_rate", f"The sample rate must be one of: {', '.join(str(r) for r in ratios)}.")
    modes = spec.info.features.get("supported_modes") or ["custom_voice"]
    mode = values["mode"]
    if mode not in modes:
        ctx.error("mode", f"The model {spec.slug} does not support the {mode} mode; it supports: {', '.join(modes)}.")
        return
    languages = {language.slug: language for language in spec.languages}
    if languages and isinstance(values.get("lang"), str):
        language = spec.find_language(values["lang"])
        if language is None:
            ctx.error("lang", f"The selected lang is invalid. Available: {', '.join(languages)}.")
        else:
            values["lang"] = language.slug
    if ctx.for_price:
        return
    if mode == "custom_voice":
        voice = values.get("voice")
        if voice is None:
            ctx.error("voice", "The voice field is required when mode is custom_voice.")
        elif values.get("lang") in languages and languages[values["lang"]].voices:
            voices = {v.slug for v in languages[values["lang"]].voices}
            if voice not in voices:
                ctx.error("voice", f"The selected voice is invalid for lang {values['lang']}.")
    elif mode == "voice_clone":
        if not ctx.files.get("ref_audio"):
            ctx.error("ref_audio", "The ref audio field is required when mode is voice_clone.")
        else:
            item = ctx.files["ref_audio"][0]
            seconds = media_duration(item.data, item.filename)
            low = num(spec.limit("min_ref_audio_seconds")) or 3
            high = num(spec.limit("max_ref_audio_seconds")) or 10
            if seconds is not None and not low <= seconds <= high:
                ctx.error("ref_audio", f"The ref audio must be between {fmt(low)} and {fmt(high)} seconds long.")
    elif mode == "voice_design" and not values.get("instruct"):
        ctx.error("instruct", "The instruct field is required when mode is voice_design.")


class TextToSpeech:
    batchable = False

    def run(self, model: LoadedModel[SpeechModel], params: TextToSpeechParams, progress: Progress) -> TaskResult:
        reference = params.ref_audio
        speed = float(params.speed or 1.0)
        ref_audio = None
        if reference:
            rate = int(getattr(model.handle, "sample_rate", 24000))
            try:
                ref_audio = (decode_audio_file(Path(reference), rate, 1)[0], rate)
            except Exception as exc:  # PyAV's errors for files that are not audio
                raise JobFailure("INVALID_INPUT", f"The ref_audio file could not be read as audio: {exc}") from exc
        try:
            samples, rate = model.handle.synthesize(
                params.text,
                mode=params.mode,
                voice=params.voice,
                lang=params.lang,
                speed=speed,
                ref_audio=ref_audio,
                ref_text=params.ref_text,
                instruct=params.instruct,
                seed=params.seed,
                progress=lambda pct: progress(min(95.0, pct * 0.95)),
            )
        except ValueError as exc:  # what the voice cannot speak is the caller's input, not our failure
            raise JobFailure("INVALID_INPUT", str(exc)) from exc
        if not getattr(model.handle, "native_speed", True):
            samples = change_tempo(samples, rate, speed)
        target = int(params.sample_rate or rate)
        samples = resample(samples, rate, target)
        container = params.format or "wav"
        data, content_type = encode_audio(samples, target, container)
        return TaskResult(
            data=data,
            filename=f"speech.{container}",
            content_type=content_type,
            meta={"sample_rate": target, "duration_seconds": round(len(samples) / target, 3), "format": container},
        )


TASK = Task(
    name="txt2audio",
    label="Text To Speech",
    group="generation",
    inference_type="txt2audio",
    params=TextToSpeechParams,
    check=check,
    pipeline=TextToSpeech(),
    rate_limit=Limit(5, 300),
    mcp=McpTool("text_to_audio", AUDIO_POLLING),
)
