"""txt2video and img2video on LTX-Video pipelines (diffusers), MP4 out, progress and latent previews.

img2video conditions on the first frame and, where the model supports it, the last one: both go
through LTX's condition pipeline built from the same loaded components (no second copy of weights).
"""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any

from engine.errors import JobFailure
from engine.tasks import Progress, TaskResult
from engine.tasks._images import StepReporter, diffusion_kwargs, encode_image_result, input_images
from engine.tasks._video import encode_mp4
from model_registry import LoadedModel

__all__ = ("PIPELINE", "ltx_frames")


def ltx_frames(frames: int) -> int:
    """LTX's VAE compresses time 8x around a first frame: it takes 8k+1 frames. The nearest one up."""
    return max(9, ((max(1, int(frames)) - 1 + 7) // 8) * 8 + 1)


def _condition_pipeline(model: LoadedModel):
    """LTX's condition pipeline over the loaded components, made once per loaded model."""
    cached = model.extras.get("condition_pipeline")
    if cached is None:
        from diffusers import LTXConditionPipeline

        pipe = model.handle
        wanted = set(inspect.signature(LTXConditionPipeline.__init__).parameters) - {"self"}
        cached = LTXConditionPipeline(**{k: v for k, v in pipe.components.items() if k in wanted})
        cached.set_progress_bar_config(disable=True)
        model.extras["condition_pipeline"] = cached
    return cached


class VideoGeneration:
    batchable = False

    def run(self, model: LoadedModel, params: dict[str, Any], inputs: dict[str, Path], progress: Progress) -> TaskResult:
        first = input_images(inputs, "first_frame_image")
        last = input_images(inputs, "last_frame_image")
        pipe = _condition_pipeline(model) if first or last else model.handle
        kwargs = diffusion_kwargs(pipe, model.spec, params)
        requested = int(params.get("frames") or 97)
        fps = float(params.get("fps") or 24)
        accepted = set(inspect.signature(pipe.__call__).parameters)
        kwargs.update({k: v for k, v in {"num_frames": ltx_frames(requested), "frame_rate": fps}.items() if k in accepted})
        if first or last:
            from diffusers.pipelines.ltx.pipeline_ltx_condition import LTXVideoCondition

            size = (int(params["width"]), int(params["height"]))
            conditions = [LTXVideoCondition(image=first[0].resize(size), frame_index=0)] if first else []
            if last:
                conditions.append(LTXVideoCondition(image=last[0].resize(size), frame_index=kwargs["num_frames"] - 1))
            kwargs["conditions"] = conditions
        reporter = StepReporter(progress, kwargs["num_inference_steps"], int(params["width"]), int(params["height"]))
        if "callback_on_step_end" in accepted:
            kwargs["callback_on_step_end"] = reporter
        try:
            video = pipe(output_type="pil", **kwargs).frames[0]
        except ValueError as exc:  # the pipeline's own checks on sizes and frames
            raise JobFailure("INVALID_INPUT", str(exc)) from exc
        video = video[:requested]  # the 8k+1 rounding added frames the request did not ask for
        data = encode_mp4(video, fps)
        poster = encode_image_result(video[0], {}, alt=False)
        return TaskResult(
            data=data,
            filename="video.mp4",
            content_type="video/mp4",
            alt_formats={"png": poster.data},
            meta={"seed": params["seed"], "frames": len(video), "fps": fps, "width": video[0].width, "height": video[0].height},
        )


PIPELINE = VideoGeneration()
