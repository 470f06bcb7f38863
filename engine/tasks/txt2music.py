"""txt2music: ACE-Step v1.5 (diffusers' AceStepPipeline) from a caption, lyrics and musical metadata.

A ``reference_audio`` upload steers the style (the pipeline's timbre/style conditioning). Output is
the pipeline's own rate (48 kHz stereo for ACE-Step) in the requested format.
"""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any

from engine.errors import JobFailure
from engine.tasks import Progress, TaskResult
from engine.tasks._audio import decode_audio_file, encode_audio
from engine.tasks._images import seeded_generator
from model_registry import LoadedModel

__all__ = ("PIPELINE",)


def _call_arguments(pipe, params: dict[str, Any]) -> dict[str, Any]:
    accepted = set(inspect.signature(pipe.__call__).parameters)
    kwargs: dict[str, Any] = {
        "prompt": params["caption"],
        "lyrics": params.get("lyrics") or "[Instrumental]",
        "audio_duration": float(params["duration"]),
        "num_inference_steps": int(params["inference_steps"]),
        "generator": seeded_generator(params["seed"]),
        "output_type": "pt",
    }
    if params.get("guidance_scale") is not None:
        kwargs["guidance_scale"] = float(params["guidance_scale"])
    if params.get("vocal_language"):
        kwargs["vocal_language"] = params["vocal_language"]
    if params.get("bpm") is not None:
        kwargs["bpm"] = int(params["bpm"])
    if params.get("keyscale"):
        kwargs["keyscale"] = params["keyscale"]
    if params.get("timesignature") is not None:
        kwargs["timesignature"] = str(params["timesignature"])
    return {k: v for k, v in kwargs.items() if k in accepted}


class TextToMusic:
    batchable = False

    def run(self, model: LoadedModel, params: dict[str, Any], inputs: dict[str, Path], progress: Progress) -> TaskResult:
        import torch

        pipe = model.handle
        kwargs = _call_arguments(pipe, params)
        rate = int(getattr(pipe, "sample_rate", 48000))
        reference = inputs.get("reference_audio")
        if reference:
            try:
                channels = int(getattr(pipe.vae.config, "audio_channels", 2))
                audio = decode_audio_file(reference[0] if isinstance(reference, list) else reference, rate, channels)
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
        fmt = params.get("format") or "flac"
        data, content_type = encode_audio(samples, rate, fmt)
        return TaskResult(
            data=data,
            filename=f"music.{fmt}",
            content_type=content_type,
            meta={"seed": params["seed"], "sample_rate": rate, "duration_seconds": round(len(samples) / rate, 3)},
        )


PIPELINE = TextToMusic()
