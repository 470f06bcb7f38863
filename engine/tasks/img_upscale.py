"""img-upscale: Real-ESRGAN x4plus over tiles, so an input of any allowed size fits the model's reserve.

Each tile is run with a margin of context around it and only its centre is kept, which hides the
seams: the network sees what lies across a tile's edge, as it would on the whole image.
"""

from __future__ import annotations

import math
from engine.rate_limits import Limit
from engine.tasks._definition import IMAGE_POLLING, McpTool, Progress, Task, TaskResult
from engine.tasks._images import encode_image_result
from engine.tasks._transform import ImageTransformParams, check_image_transform, eight_bit, uploaded_image
from model_registry import LoadedModel
from model_registry.kinds import Upscaler

__all__ = ("TASK", "plan_tiles", "tile_side", "upscale_array")

TILE_PAD = 16
"""Input pixels of context on each side of a tile."""

MIN_TILE, MAX_TILE = 32, 1024

# Bytes of activations per input pixel of a tile, per byte of the compute dtype: the 4x-upscaled
# 64-channel maps (16 output pixels per input pixel) dominate, and up to three of them are alive at
# once (input, output and the LeakyReLU temporary of conv_up2/conv_hr).
_ACTIVATION_BYTES_PER_PIXEL = 64 * 16 * 3


def tile_side(working_bytes: int, element_size: int) -> int:
    """The largest tile (input pixels, padding included) whose activations fit ``working_bytes``."""
    side = math.isqrt(max(0, working_bytes) // (_ACTIVATION_BYTES_PER_PIXEL * element_size)) - 2 * TILE_PAD
    return max(MIN_TILE, min(MAX_TILE, side - side % 8))


def plan_tiles(width: int, height: int, side: int) -> list[tuple[int, int, int, int]]:
    """(left, top, right, bottom) of each tile, row by row, covering the image exactly once."""
    return [
        (x, y, min(x + side, width), min(y + side, height))
        for y in range(0, height, side)
        for x in range(0, width, side)
    ]


def upscale_array(network, rgb, side: int, progress: Progress | None = None):
    """Upscale an H×W×3 uint8 array tile by tile; returns the (sH)×(sW)×3 uint8 array."""
    import numpy as np
    import torch

    height, width = rgb.shape[:2]
    parameter = next(network.parameters())
    scale = int(getattr(network, "scale", 4))
    out = np.empty((height * scale, width * scale, 3), dtype=np.uint8)
    tiles = plan_tiles(width, height, side)
    source = torch.from_numpy(rgb).permute(2, 0, 1).unsqueeze(0)  # uint8 on the CPU until a tile needs it
    with torch.inference_mode():
        for index, (left, top, right, bottom) in enumerate(tiles):
            pl, pt = max(0, left - TILE_PAD), max(0, top - TILE_PAD)
            pr, pb = min(width, right + TILE_PAD), min(height, bottom + TILE_PAD)
            patch = source[:, :, pt:pb, pl:pr].to(device=parameter.device, dtype=parameter.dtype) / 255.0
            result = network(patch)
            crop = result[:, :, (top - pt) * scale : (bottom - pt) * scale, (left - pl) * scale : (right - pl) * scale]
            pixels = (crop.float().clamp_(0, 1) * 255.0).round_().to(torch.uint8)
            out[top * scale : bottom * scale, left * scale : right * scale] = pixels[0].permute(1, 2, 0).cpu().numpy()
            del patch, result, crop, pixels
            if progress is not None:
                progress(100.0 * (index + 1) / len(tiles))
    return out


class ImageUpscale:
    batchable = False

    def run(self, model: LoadedModel[Upscaler], params: ImageTransformParams, progress: Progress) -> TaskResult:
        import numpy as np
        from PIL import Image

        image = eight_bit(uploaded_image(params.image))
        network = model.handle
        element_size = next(network.parameters()).element_size()
        side = tile_side(int(model.extras.get("working_bytes", 0)), element_size)
        scale = int(getattr(network, "scale", 4))
        upscaled = Image.fromarray(upscale_array(network, np.array(image.convert("RGB")), side, progress))
        # Alpha carries no texture worth a network pass: bicubic keeps its edges and costs nothing.
        if image.mode in ("RGBA", "LA") or (image.mode == "P" and "transparency" in image.info):
            alpha = image.convert("RGBA").getchannel("A").resize(upscaled.size, Image.Resampling.BICUBIC)
            upscaled.putalpha(alpha)
        elif image.mode == "L":
            upscaled = upscaled.convert("L")
        meta = {"scale": scale, "tiles": len(plan_tiles(image.width, image.height, side)), "tile_side": side}
        return encode_image_result(upscaled, meta)


TASK = Task(
    name="img-upscale",
    label="Image Upscale",
    group="transformation",
    inference_type="img-upscale",
    params=ImageTransformParams,
    check=check_image_transform,
    pipeline=ImageUpscale(),
    rate_limit=Limit(5, 100),
    mcp=McpTool("image_upscale", IMAGE_POLLING),
)
