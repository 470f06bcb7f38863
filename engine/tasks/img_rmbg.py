"""img-rmbg: a foreground mask (BEN2's or BRIA RMBG-1.4's) becomes the alpha channel of a transparent PNG."""

from __future__ import annotations

from engine.rate_limits import Limit
from engine.tasks._definition import IMAGE_POLLING, McpTool, Progress, Task, TaskResult
from engine.tasks._images import encode_image_result
from engine.tasks._transform import ImageTransformParams, check_image_transform, eight_bit, foreground_mask, uploaded_image
from model_registry import LoadedModel

__all__ = ("TASK", "cut_out")


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

    def run(self, model: LoadedModel, params: ImageTransformParams, progress: Progress) -> TaskResult:
        image = eight_bit(uploaded_image(params.image))
        progress(10.0)
        mask = foreground_mask(model, image.convert("RGB"))
        progress(90.0)
        # JPEG has no alpha channel, so the transparent PNG is the only format worth offering.
        return encode_image_result(cut_out(image, mask), {}, alt=False)


TASK = Task(
    name="img-rmbg",
    label="Background Removal",
    group="transformation",
    inference_type="img-rmbg",
    params=ImageTransformParams,
    check=check_image_transform,
    pipeline=BackgroundRemoval(),
    rate_limit=Limit(5, 100),
    mcp=McpTool("image_remove_background", IMAGE_POLLING),
)
