"""img2img: edit one or several input images with a prompt (FLUX.2 klein, Qwen-Image-Edit-2509)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from engine.errors import JobFailure
from engine.tasks import Progress, TaskResult
from engine.tasks._images import input_images
from engine.tasks.txt2img import generate
from model_registry import LoadedModel

__all__ = ("PIPELINE", "at_least")

MIN_REFERENCE_SIDE = 64
"""FLUX.2's image processor refuses references under 64 px a side; upsizing them loses nothing."""


def at_least(image, side: int = MIN_REFERENCE_SIDE):
    from PIL import Image

    short = min(image.size)
    if short >= side:
        return image
    scale = side / short
    return image.resize((max(side, round(image.width * scale)), max(side, round(image.height * scale))), Image.Resampling.LANCZOS)


class ImageToImage:
    batchable = False

    def run(self, model: LoadedModel, params: dict[str, Any], inputs: dict[str, Path], progress: Progress) -> TaskResult:
        images = input_images(inputs, "image", "images")
        if not images:
            raise JobFailure("INVALID_INPUT", "The job has no input image.")
        params = dict(params)
        params.setdefault("width", images[0].width)
        params.setdefault("height", images[0].height)
        images = [at_least(image) for image in images]
        # The edit pipelines take a list of reference images; one image is a list of one.
        return generate(model, params, progress, image=images)


PIPELINE = ImageToImage()
