"""What the image transformations (upscale, background removal) share: the one uploaded image."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from engine.errors import JobFailure

__all__ = ("eight_bit", "uploaded_image")


def uploaded_image(inputs: dict[str, Any], name: str = "image"):
    """The upload under ``name``, upright (EXIF orientation applied), in its own mode and fully read."""
    from PIL import Image, ImageOps

    value = inputs.get(name)
    path = value[0] if isinstance(value, list) and value else value
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
