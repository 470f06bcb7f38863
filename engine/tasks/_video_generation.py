"""What txt2video, img2video and aud2video share: their parameters, checks and one pipeline on LTX-Video
and LTX-2 (diffusers): MP4 out, progress and latent previews.

First and last frames go through the family's condition pipeline, built from the same loaded
components (no second copy of weights). LTX-2 makes a soundtrack with the picture, which the MP4
carries; aud2video (LTX-2 only) holds a given soundtrack fixed and generates the picture to it.
"""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Annotated

import msgspec

from engine.errors import JobFailure
from engine.tasks._checks import Checking, dimensions, guidance, image_limits, negative_prompt, seed, steps
from engine.tasks._definition import SENT, Form, Progress, TaskResult
from engine.tasks._images import StepReporter, diffusion_kwargs, encode_image_result, input_images
from engine.tasks._ltx2 import condition_pipeline as ltx2_condition_pipeline
from engine.tasks._ltx2 import holding_audio_fixed, is_ltx2, soundtrack_latents
from engine.tasks._video import encode_mp4
from model_registry import LoadedModel
from model_registry.kinds import ImagePipeline

__all__ = ("PIPELINE", "VideoParams", "check", "ltx_frames")

IMAGE_NOT_PRICED = Form(kind="file", file_rule="image", price="no")


class VideoParams(msgspec.Struct, kw_only=True):
    prompt: Annotated[str, Form(required=True, price="no")]
    negative_prompt: Annotated[str | None, SENT] = None
    width: Annotated[int, Form(required=True, price="required")]
    height: Annotated[int, Form(required=True, price="required")]
    steps: Annotated[int, SENT]
    frames: Annotated[int, Form(required=True, price="required")]
    fps: Annotated[float | None, Form(kind="integer")] = None
    guidance: Annotated[float | None, Form(aliases=("guidance_scale",))] = None
    seed: Annotated[int, Form(required=True)]
    # The uploads of img2video and aud2video (txt2video has none).
    first_frame_image: Path | None = None
    last_frame_image: Path | None = None
    audio: Path | None = None


def check(ctx: Checking) -> None:
    dimensions(ctx, required=True)
    ctx.default("fps")
    ctx.between("fps", "min_fps", "max_fps", "fps")
    ctx.between("frames", "min_frames", "max_frames")
    steps(ctx)
    guidance(ctx)
    negative_prompt(ctx)
    seed(ctx)
    for name in ("first_frame_image", "last_frame_image"):
        image_limits(ctx, name)
    if ctx.files.get("last_frame_image") and not ctx.spec.feature("supports_last_frame"):
        ctx.error("last_frame_image", f"The model {ctx.spec.slug} does not support a last frame.")


def ltx_frames(frames: int) -> int:
    """LTX's VAE compresses time 8x around a first frame: it takes 8k+1 frames. The nearest one up."""
    return max(9, ((max(1, int(frames)) - 1 + 7) // 8) * 8 + 1)


def _ltx_condition_pipeline(model: LoadedModel):
    """LTX-Video's condition pipeline over the loaded components, made once per loaded model."""
    cached = model.extras.get("condition_pipeline")
    if cached is None:
        from diffusers import LTXConditionPipeline

        pipe = model.handle
        wanted = set(inspect.signature(LTXConditionPipeline.__init__).parameters) - {"self"}
        cached = LTXConditionPipeline(**{k: v for k, v in pipe.components.items() if k in wanted})
        cached.set_progress_bar_config(disable=True)
        model.extras["condition_pipeline"] = cached
    return cached


def _frame_conditions(model: LoadedModel, first, last, size: tuple[int, int], num_frames: int):
    """The condition pipeline and its conditions for a first and/or last frame."""
    if is_ltx2(model.handle):
        from diffusers.pipelines.ltx2.pipeline_ltx2_condition import LTX2VideoCondition

        # LTX-2 counts condition positions in latent frames: -1 is the last one, whatever the length.
        made = [LTX2VideoCondition(frames=first[0].resize(size), index=0)] if first else []
        if last:
            made.append(LTX2VideoCondition(frames=last[0].resize(size), index=-1))
        return ltx2_condition_pipeline(model), made
    from diffusers.pipelines.ltx.pipeline_ltx_condition import LTXVideoCondition

    made = [LTXVideoCondition(image=first[0].resize(size), frame_index=0)] if first else []
    if last:
        made.append(LTXVideoCondition(image=last[0].resize(size), frame_index=num_frames - 1))
    return _ltx_condition_pipeline(model), made


class VideoGeneration:
    batchable = False

    def run(self, model: LoadedModel[ImagePipeline], params: VideoParams, progress: Progress) -> TaskResult:
        first = input_images(params.first_frame_image)
        last = input_images(params.last_frame_image)
        soundtrack = params.audio
        if soundtrack is not None and not is_ltx2(model.handle):
            raise JobFailure("INVALID_INPUT", f"Model {model.spec.slug} cannot follow a soundtrack; use an LTX-2 model.")
        requested = int(params.frames or 97)
        fps = float(params.fps or 24)
        size = (int(params.width), int(params.height))
        num_frames = ltx_frames(requested)
        pipe, conditions = (
            _frame_conditions(model, first, last, size, num_frames) if first or last else (model.handle, [])
        )
        kwargs = diffusion_kwargs(pipe, model.spec, params)
        accepted = set(inspect.signature(pipe.__call__).parameters)
        kwargs.update({k: v for k, v in {"num_frames": num_frames, "frame_rate": fps}.items() if k in accepted})
        if conditions:
            kwargs["conditions"] = conditions
        given_audio = None
        if soundtrack is not None:
            try:
                kwargs["audio_latents"], given_audio = soundtrack_latents(pipe, soundtrack, num_frames / fps)
            except ValueError as exc:  # no audio track, an empty file
                raise JobFailure("INVALID_INPUT", f"The audio could not be read: {exc}") from exc
        reporter = StepReporter(progress, kwargs["num_inference_steps"], *size, unpack=_video_latents(num_frames, size))
        if "callback_on_step_end" in accepted:
            kwargs["callback_on_step_end"] = reporter
        try:
            if given_audio is not None:
                with holding_audio_fixed(pipe):
                    output = pipe(output_type="pil", **kwargs)
            else:
                output = pipe(output_type="pil", **kwargs)
        except ValueError as exc:  # the pipeline's own checks on sizes and frames
            raise JobFailure("INVALID_INPUT", str(exc)) from exc
        finally:
            if pipe is not model.handle:
                # The condition pipeline shares the loaded one's offload hooks but not their list, so its own
                # end-of-call reset finds none: the last component it ran (the VAE) would stay on the GPU.
                model.handle.maybe_free_model_hooks()
        video = output.frames[0][:requested]  # the 8k+1 rounding added frames the request did not ask for
        audio, audio_rate = _soundtrack(pipe, output, given_audio, len(video) / fps)
        data = encode_mp4(video, fps, audio=audio, audio_rate=audio_rate)
        poster = encode_image_result(video[0], {}, alt=False)
        meta = {"seed": params.seed, "frames": len(video), "fps": fps, "width": video[0].width, "height": video[0].height}
        if audio is not None:
            meta["audio_sample_rate"] = audio_rate
        return TaskResult(data=data, filename="video.mp4", content_type="video/mp4", alt_formats={"png": poster.data}, meta=meta)


def _video_latents(num_frames: int, size: tuple[int, int]):
    """LTX packs video latents as tokens (B, frames x rows x cols, C); unpacked to (B, C, F, H, W), the
    preview shows the middle latent frame instead of every frame's tokens stacked into one picture.
    Keyframe tokens a condition pipeline appends after the video's are left out."""

    def unpack(pipe, latents):
        if latents.ndim != 3 or not hasattr(pipe, "_unpack_latents"):
            return latents
        spatial, temporal = pipe.vae_spatial_compression_ratio, pipe.vae_temporal_compression_ratio
        patch, patch_t = pipe.transformer_spatial_patch_size, pipe.transformer_temporal_patch_size
        frames = ((num_frames - 1) // temporal + 1) // patch_t
        rows, cols = size[1] // spatial // patch, size[0] // spatial // patch
        if latents.shape[1] < frames * rows * cols or min(frames, rows, cols) < 1:
            return latents
        return pipe._unpack_latents(latents[:, : frames * rows * cols], frames, rows, cols, patch, patch_t)

    return unpack


def _soundtrack(pipe, output, given, seconds: float):
    """The MP4's sound: the given soundtrack itself (aud2video), else what LTX-2 generated, cut to the
    frames kept; LTX-Video makes none."""
    import numpy as np

    if given is not None:
        rate = int(pipe.audio_vae.config.sample_rate)
        return given[:, : max(1, round(seconds * rate))], rate
    audio = getattr(output, "audio", None)
    if audio is None:
        return None, None
    rate = int(pipe.vocoder.config.output_sampling_rate)
    samples = np.asarray(audio[0].float().cpu() if hasattr(audio, "float") else audio[0], dtype=np.float32)
    return samples[:, : max(1, round(seconds * rate))], rate


PIPELINE = VideoGeneration()
