"""What the image transformations (upscale, background removal) share: their parameters (the one
uploaded image, priced by its size) and reading it."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import msgspec

from engine.errors import JobFailure
from engine.tasks._checks import Checking, image_limits, size_from_image
from engine.tasks._definition import SENT, Form
from model_registry import LoadedModel

__all__ = ("ImageTransformParams", "check_image_transform", "eight_bit", "foreground_mask", "uploaded_image")


class ImageTransformParams(msgspec.Struct, kw_only=True):
    image: Annotated[Path | None, Form(required=True, kind="file", file_rule="image")] = None
    width: Annotated[int | None, SENT] = None
    height: Annotated[int | None, SENT] = None


def check_image_transform(ctx: Checking) -> None:
    image_limits(ctx, "image")
    size_from_image(ctx, "image")


def uploaded_image(path: Path | None, name: str = "image"):
    """The upload ``name`` (at ``path``), upright (EXIF orientation applied), in its own mode and fully read."""
    from PIL import Image, ImageOps

    if not path:
        raise JobFailure("INVALID_INPUT", f"The job has no {name} upload.")
    with Image.open(Path(path)) as image:
        upright = ImageOps.exif_transpose(image)
        upright.load()
        return upright


def eight_bit(image):
    """16-bit and 32-bit greyscale scaled down to 8 bits; PIL's own conversion would clip them to white."""
    if image.mode not in ("I", "I;16", "I;16B", "I;16L", "F"):
        return image
    import numpy as np
    from PIL import Image

    values = np.asarray(image, dtype=np.float64)
    top = 65535.0 if values.max() > 255 else 255.0
    return Image.fromarray((values * (255.0 / top)).clip(0, 255).round().astype(np.uint8), "L")


def foreground_mask(model: LoadedModel, image):
    """The "L" foreground mask of an RGB PIL image, as img-rmbg makes it: U²-Net-p's and RMBG-1.4's
    handles carry ``predict_mask``, BEN2's network uses the module function; all at the model's working size."""
    from model_registry.networks.ben2 import predict_mask

    size = int(model.extras.get("working_size", 1024))
    if hasattr(model.handle, "predict_mask"):
        return model.handle.predict_mask(image, size=size)
    return predict_mask(model.handle, image, size=size)
