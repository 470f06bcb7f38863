"""img-rmbg: a foreground mask (BEN2's or BRIA RMBG-1.4's) becomes the alpha channel of a transparent PNG."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from engine.tasks import Progress, TaskResult
from engine.tasks._images import encode_image_result
from engine.tasks._transform import eight_bit, uploaded_image
from model_registry import LoadedModel

__all__ = ("PIPELINE", "cut_out")


def cut_out(image, mask):
    """The image as RGBA with ``mask`` (an "L" image of the same size) as its alpha.

    An input that was already transparent keeps what it hid hidden: the two alphas multiply.
    """
    from PIL import ImageChops

    rgba = image.convert("RGBA")
    alpha = mask if mask.size == rgba.size else mask.resize(rgba.size)
    if image.mode in ("RGBA", "LA") or (image.mode == "P" and "transparency" in image.info):
        alpha = ImageChops.multiply(alpha, rgba.getchannel("A"))
    rgba.putalpha(alpha)
    return rgba


class BackgroundRemoval:
    batchable = False

    def run(self, model: LoadedModel, params: dict[str, Any], inputs: dict[str, Path], progress: Progress) -> TaskResult:
        from model_registry.networks.ben2 import predict_mask

        image = eight_bit(uploaded_image(inputs))
        progress(10.0)
        size = int(model.extras.get("working_size", 1024))
        if hasattr(model.handle, "predict_mask"):  # RMBG's network carries its own; BEN2's is a module function
            mask = model.handle.predict_mask(image.convert("RGB"), size=size)
        else:
            mask = predict_mask(model.handle, image.convert("RGB"), size=size)
        progress(90.0)
        # JPEG has no alpha channel, so the transparent PNG is the only format worth offering.
        return encode_image_result(cut_out(image, mask), {}, alt=False)


PIPELINE = BackgroundRemoval()
