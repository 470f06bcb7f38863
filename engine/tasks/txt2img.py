"""txt2img: a diffusers text-to-image pipeline, seeded, with progress, previews and LoRAs."""

from __future__ import annotations

from typing import Annotated, Any

import msgspec

from engine.rate_limits import Limit
from engine.tasks._checks import Checking, dimensions, guidance, loras, negative_prompt, seed, steps
from engine.tasks._definition import IMAGE_POLLING, SENT, Form, McpTool, Progress, Task, TaskResult
from engine.tasks._images import DiffusionParams, Lora, StepReporter, diffusion_kwargs, encode_image_result, loras_applied
from model_registry import LoadedModel
from model_registry.kinds import ImagePipeline

__all__ = ("TASK", "TextToImageParams", "generate")

GUIDANCE = Form(aliases=("guidance_scale",))
LORAS = Form(kind="loras")


class TextToImageParams(msgspec.Struct, kw_only=True):
    prompt: Annotated[str, Form(required=True)]
    negative_prompt: Annotated[str | None, SENT] = None
    width: Annotated[int, Form(required=True, price="required")]
    height: Annotated[int, Form(required=True, price="required")]
    seed: Annotated[int, Form(required=True)]
    steps: Annotated[int, SENT]
    guidance: Annotated[float | None, GUIDANCE] = None
    loras: Annotated[list[Lora] | None, LORAS] = None


def check(ctx: Checking) -> None:
    dimensions(ctx, required=True)
    steps(ctx)
    guidance(ctx)
    negative_prompt(ctx)
    loras(ctx)
    seed(ctx)


def generate(model: LoadedModel[ImagePipeline], params: DiffusionParams, progress: Progress, loras: list[Lora] | None, **extra: Any) -> TaskResult:
    """Run the pipeline once; img2img passes its input images in ``extra``."""
    pipe = model.handle
    kwargs = diffusion_kwargs(pipe, model.spec, params)
    kwargs.update(extra)
    width, height = int(params.width), int(params.height)
    kwargs["callback_on_step_end"] = StepReporter(progress, int(params.steps), width, height)
    kwargs["callback_on_step_end_tensor_inputs"] = ["latents"]
    with loras_applied(model, loras):
        image = pipe(**kwargs, output_type="pil").images[0]
    if image.size != (width, height):
        # Every supported size is a multiple of the VAE's factor, so this only guards odd custom models.
        from PIL import Image

        image = image.resize((width, height), Image.Resampling.LANCZOS)
    return encode_image_result(image, {"seed": int(params.seed)})


class TextToImage:
    batchable = False

    def run(self, model: LoadedModel[ImagePipeline], params: TextToImageParams, progress: Progress) -> TaskResult:
        return generate(model, params, progress, params.loras)


TASK = Task(
    name="txt2img",
    label="Text To Image",
    group="generation",
    inference_type="txt2img",
    params=TextToImageParams,
    check=check,
    pipeline=TextToImage(),
    rate_limit=Limit(3, 100),
    mcp=McpTool("text_to_image", IMAGE_POLLING),
)
