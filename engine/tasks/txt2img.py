"""txt2img: a diffusers text-to-image pipeline, seeded, with progress, previews and LoRAs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from engine.tasks import Progress, TaskResult
from engine.tasks._images import StepReporter, diffusion_kwargs, encode_image_result, loras_applied
from model_registry import LoadedModel

__all__ = ("PIPELINE", "generate")


def generate(model: LoadedModel, params: dict[str, Any], progress: Progress, **extra: Any) -> TaskResult:
    """Run the pipeline once; img2img passes its input images in ``extra``."""
    pipe = model.handle
    kwargs = diffusion_kwargs(pipe, model.spec, params)
    kwargs.update(extra)
    width, height = int(params["width"]), int(params["height"])
    kwargs["callback_on_step_end"] = StepReporter(progress, int(params["steps"]), width, height)
    kwargs["callback_on_step_end_tensor_inputs"] = ["latents"]
    with loras_applied(model, params.get("loras")):
        image = pipe(**kwargs, output_type="pil").images[0]
    if image.size != (width, height):
        # Every supported size is a multiple of the VAE's factor, so this only guards odd custom models.
        from PIL import Image

        image = image.resize((width, height), Image.Resampling.LANCZOS)
    return encode_image_result(image, {"seed": int(params["seed"])})


class TextToImage:
    batchable = False

    def run(self, model: LoadedModel, params: dict[str, Any], inputs: dict[str, Path], progress: Progress) -> TaskResult:
        return generate(model, params, progress)


PIPELINE = TextToImage()
