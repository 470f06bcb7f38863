"""txt2music: ACE-Step v1.5 (diffusers' AceStepPipeline) from a caption, lyrics and musical metadata.

A ``reference_audio`` upload steers the style (the pipeline's timbre/style conditioning). Output is
the pipeline's own rate (48 kHz stereo for ACE-Step) in the requested format.
"""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Annotated, Any

import msgspec

from engine.errors import JobFailure
from engine.rate_limits import Limit
from engine.tasks._audio import decode_audio_file, encode_audio
from engine.tasks._checks import Checking, seed
from engine.tasks._definition import AUDIO_POLLING, SENT, Form, McpTool, Progress, Task, TaskResult
from engine.tasks._images import seeded_generator
from engine.tasks.txt2audio import AUDIO_FORMATS
from model_registry import LoadedModel
from model_registry.kinds import ImagePipeline

__all__ = ("TASK", "TextToMusicParams")


class TextToMusicParams(msgspec.Struct, kw_only=True):
    caption: Annotated[str, Form(required=True, price="no")]
    lyrics: Annotated[str | None, Form(price="no")] = None
    duration: Annotated[float, Form(required=True, price="required")]
    inference_steps: Annotated[int | None, Form(price="required")] = None
    guidance_scale: Annotated[float | None, SENT] = None
    seed: Annotated[int, SENT]
    format: Annotated[str | None, Form(choices=AUDIO_FORMATS)] = None
    bpm: Annotated[int | None, SENT] = None
    keyscale: Annotated[str | None, SENT] = None
    timesignature: Annotated[int | None, Form(choices=(2, 3, 4, 6))] = None
    vocal_language: Annotated[str | None, SENT] = None
    reference_audio: Annotated[Path | None, Form(kind="file", file_rule="music_reference", price="no")] = None


def check(ctx: Checking) -> None:
    ctx.between("duration", "min_duration", "max_duration")
    ctx.default("inference_steps")
    if ctx.values.get("inference_steps") is not None:
        ctx.between("inference_steps", "min_steps", "max_steps", "inference steps")
    ctx.default("guidance_scale")
    ctx.between("guidance_scale", "min_guidance", "max_guidance", "guidance scale")
    ctx.between("bpm", "min_bpm", "max_bpm")
    ctx.default("format")
    if not ctx.for_price:
        ctx.default("lyrics", "[Instrumental]")
    seed(ctx)


def _call_arguments(pipe, params: TextToMusicParams) -> dict[str, Any]:
    accepted = set(inspect.signature(pipe.__call__).parameters)
    kwargs: dict[str, Any] = {
        "prompt": params.caption,
        "lyrics": params.lyrics or "[Instrumental]",
        "audio_duration": float(params.duration),
        "generator": seeded_generator(params.seed),
        "output_type": "pt",
    }
    if params.inference_steps is not None:  # else the pipeline's own default
        kwargs["num_inference_steps"] = int(params.inference_steps)
    if params.guidance_scale is not None:
        kwargs["guidance_scale"] = float(params.guidance_scale)
    if params.vocal_language:
        kwargs["vocal_language"] = params.vocal_language
    if params.bpm is not None:
        kwargs["bpm"] = int(params.bpm)
    if params.keyscale:
        kwargs["keyscale"] = params.keyscale
    if params.timesignature is not None:
        kwargs["timesignature"] = str(params.timesignature)
    return {k: v for k, v in kwargs.items() if k in accepted}


class TextToMusic:
    batchable = False

    def run(self, model: LoadedModel[ImagePipeline], params: TextToMusicParams, progress: Progress) -> TaskResult:
        import torch

        pipe = model.handle
        kwargs = _call_arguments(pipe, params)
        rate = int(getattr(pipe, "sample_rate", 48000))
        reference = params.reference_audio
        if reference:
            try:
                channels = int(getattr(pipe.vae.config, "audio_channels", 2))
                audio = decode_audio_file(reference, rate, channels)
            except Exception as exc:
                raise JobFailure("INVALID_INPUT", f"The reference audio could not be decoded: {exc}") from exc
            kwargs["reference_audio"] = torch.from_numpy(audio)
        steps = kwargs.get("num_inference_steps", 1)

        def on_step_end(pipeline, step, timestep, callback_kwargs):
            progress(100.0 * (step + 1) / (steps + 1))  # the last share is the VAE decode
            return callback_kwargs

        if "callback_on_step_end" in inspect.signature(pipe.__call__).parameters:
            kwargs["callback_on_step_end"] = on_step_end
        audios = pipe(**kwargs).audios
        samples = audios[0].float().cpu().numpy().T  # (samples, channels)
        container = params.format or "flac"
        data, content_type = encode_audio(samples, rate, container)
        return TaskResult(
            data=data,
            filename=f"music.{container}",
            content_type=content_type,
            meta={"seed": params.seed, "sample_rate": rate, "duration_seconds": round(len(samples) / rate, 3)},
        )


TASK = Task(
    name="txt2music",
    label="Text To Music",
    group="generation",
    inference_type="txt2music",
    params=TextToMusicParams,
    check=check,
    pipeline=TextToMusic(),
    rate_limit=Limit(1, 15),
    mcp=McpTool("text_to_music", AUDIO_POLLING),
)
