"""img2img: edit one or several input images with a prompt (FLUX.2 klein, Qwen-Image-Edit-2509)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import msgspec

from engine.errors import JobFailure
from engine.rate_limits import Limit
from engine.tasks._checks import Checking, dimensions, guidance, loras, negative_prompt, num, seed, steps
from engine.tasks._definition import IMAGE_POLLING, SENT, Form, McpTool, Progress, Task, TaskResult
from engine.tasks._images import Lora, input_images
from engine.tasks.txt2img import GUIDANCE, LORAS, generate
from model_registry import LoadedModel
from model_registry.kinds import ImagePipeline

__all__ = ("TASK", "ImageToImageParams", "at_least")

MIN_REFERENCE_SIDE = 64
"""FLUX.2's image processor refuses references under 64 px a side; upsizing them loses nothing."""


class ImageToImageParams(msgspec.Struct, kw_only=True):
    prompt: Annotated[str, Form(required=True)]
    negative_prompt: Annotated[str | None, SENT] = None
    image: Annotated[Path | None, Form(kind="file", file_rule="image", price="no")] = None
    images: Annotated[list[Path], Form(kind="files", file_rule="image", price="no")] = []
    width: Annotated[int | None, SENT] = None
    height: Annotated[int | None, SENT] = None
    steps: Annotated[int, SENT]
    seed: Annotated[int, Form(required=True)]
    guidance: Annotated[float | None, GUIDANCE] = None
    loras: Annotated[list[Lora] | None, LORAS] = None


def check(ctx: Checking) -> None:
    single, several = ctx.files.get("image", []), ctx.files.get("images", [])
    if not ctx.for_price:
        if single and several:
            ctx.error("image", "The image field prohibits images[] from being present.")
        elif not single and not several and "image" not in ctx.errors and "images" not in ctx.errors:
            ctx.error("image", "The image field is required when images[] is not present.")
        count = len(single) + len(several)
        limit = int(num(ctx.spec.limit("max_input_images")) or 1)
        if count > limit:
            ctx.error("images", f"The model {ctx.spec.slug} accepts at most {limit} input image{'s' if limit > 1 else ''}.")
    sizes = ctx.image_sizes.get("image", []) + ctx.image_sizes.get("images", [])
    if sizes:
        ctx.values.setdefault("width", sizes[0][0])
        ctx.values.setdefault("height", sizes[0][1])
    dimensions(ctx, required=False)
    steps(ctx)
    guidance(ctx)
    negative_prompt(ctx)
    loras(ctx)
    seed(ctx)


def at_least(image, side: int = MIN_REFERENCE_SIDE):
    from PIL import Image

    short = min(image.size)
    if short >= side:
        return image
    scale = side / short
    return image.resize((max(side, round(image.width * scale)), max(side, round(image.height * scale))), Image.Resampling.LANCZOS)


class ImageToImage:
    batchable = False

    def run(self, model: LoadedModel[ImagePipeline], params: ImageToImageParams, progress: Progress) -> TaskResult:
        images = input_images(params.image, params.images)
        if not images:
            raise JobFailure("INVALID_INPUT", "The job has no input image.")
        sized = msgspec.structs.replace(
            params, width=params.width or images[0].width, height=params.height or images[0].height
        )
        images = [at_least(image) for image in images]
        # The edit pipelines take a list of reference images; one image is a list of one.
        return generate(model, sized, progress, params.loras, image=images)


TASK = Task(
    name="img2img",
    label="Image To Image",
    group="transformation",
    inference_type="img2img",
    params=ImageToImageParams,
    check=check,
    pipeline=ImageToImage(),
    rate_limit=Limit(1, 15),
    mcp=McpTool("image_to_image", IMAGE_POLLING),
    one_upload_of=("image", "images"),
)
