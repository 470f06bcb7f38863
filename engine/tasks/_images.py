"""What the image pipelines share: reading uploads, encoding results, previews, LoRAs, call arguments."""

from __future__ import annotations

import contextlib
import inspect
import io
import math
from pathlib import Path
from typing import Any, Callable, Iterator, Protocol

import msgspec

from engine.errors import JobFailure
from engine.tasks._definition import TaskResult
from model_registry import LoadedModel

__all__ = (
    "DiffusionParams",
    "Lora",
    "StepReporter",
    "diffusion_kwargs",
    "encode_image_result",
    "input_images",
    "latent_preview",
    "loras_applied",
    "seeded_generator",
)

class Lora(msgspec.Struct):
    name: str
    weight: float = 1.0


PREVIEW_SIDE = 256
"""Longest side of a preview JPEG: small enough to send every few steps over a socket."""


def input_images(*uploads: Path | list[Path] | None) -> list:
    """The uploaded images (a path, a list of paths, or none each), in upload order, as RGB PIL images."""
    from PIL import Image, ImageOps

    images = []
    for value in uploads:
        for path in value if isinstance(value, list) else [value] if value else []:
            with Image.open(Path(path)) as image:
                images.append(ImageOps.exif_transpose(image).convert("RGB"))
    return images


def encode_image_result(image, meta: dict[str, Any], *, alt: bool = True) -> TaskResult:
    """PNG by default, with JPEG and WebP beside it for ``results_alt_formats``."""
    png = io.BytesIO()
    image.save(png, "PNG")
    alt_formats = {}
    if alt:
        rgb = image.convert("RGB")
        jpg, webp = io.BytesIO(), io.BytesIO()
        rgb.save(jpg, "JPEG", quality=92)
        image.save(webp, "WEBP", quality=90)
        alt_formats = {"jpg": jpg.getvalue(), "webp": webp.getvalue()}
    return TaskResult(
        data=png.getvalue(),
        filename="result.png",
        content_type="image/png",
        alt_formats=alt_formats,
        meta={"width": image.width, "height": image.height, **meta},
    )


def seeded_generator(seed: int):
    import torch

    # A CPU generator gives the same noise on every device, so a seed means the same image anywhere.
    return torch.Generator(device="cpu").manual_seed(int(seed))


class DiffusionParams(Protocol):
    """What the image and video tasks' parameters share."""

    prompt: str
    negative_prompt: str | None
    width: int
    height: int
    steps: int
    seed: int
    guidance: float | None


def diffusion_kwargs(pipe, spec, params: DiffusionParams) -> dict[str, Any]:
    """Map dryAPI parameters onto this pipeline's ``__call__``, honouring the model's features."""
    accepted = set(inspect.signature(pipe.__call__).parameters)
    kwargs: dict[str, Any] = {
        "prompt": params.prompt,
        "width": params.width,
        "height": params.height,
        "num_inference_steps": int(params.steps),
        "generator": seeded_generator(params.seed),
    }
    if spec.sigmas and len(spec.sigmas) == int(params.steps) and "sigmas" in accepted:
        kwargs["sigmas"] = list(spec.sigmas)
    guidance = params.guidance
    if guidance is not None and spec.feature("supports_guidance", True):
        # Qwen-Image runs real classifier-free guidance (true_cfg_scale); distilled models take guidance_scale.
        kwargs["true_cfg_scale" if "true_cfg_scale" in accepted else "guidance_scale"] = float(guidance)
    elif not spec.feature("supports_guidance", True):
        # A distilled model that takes no guidance runs without it: the pipeline's own default (LTX-Video's
        # 3) would turn classifier-free guidance on and run every step twice.
        kwargs["guidance_scale"] = float(spec.default("guidance", 1.0))
    negative = params.negative_prompt
    if negative and spec.feature("supports_negative_prompt", True):
        kwargs["negative_prompt"] = negative
    elif "true_cfg_scale" in kwargs and kwargs["true_cfg_scale"] > 1:
        kwargs["negative_prompt"] = " "  # Qwen-Image only applies CFG when a negative prompt is given
    return {k: v for k, v in kwargs.items() if k in accepted}


def packed_grid(tokens: int, width: int, height: int) -> tuple[int, int]:
    """Rows and columns of a packed latent sequence with the image's aspect ratio."""
    rows = max(1, round(math.sqrt(tokens * height / width)))
    for delta in range(tokens):
        for candidate in (rows - delta, rows + delta):
            if candidate > 0 and tokens % candidate == 0:
                return candidate, tokens // candidate
    return 1, tokens


def latent_preview(latents, width: int, height: int) -> bytes:
    """A cheap latent-to-RGB projection: channel groups averaged into R, G, B, stretched, as a JPEG."""
    import torch
    from PIL import Image

    x = latents[0].detach().float().cpu()
    if x.ndim == 2:  # packed tokens (FLUX, Qwen): (sequence, channels x patch)
        rows, cols = packed_grid(x.shape[0], width, height)
        x = x[: rows * cols].reshape(rows, cols, -1).permute(2, 0, 1)
    elif x.ndim == 4:  # video latents (C, F, H, W): the middle frame
        x = x[:, x.shape[1] // 2]
    groups = torch.tensor_split(x, 3, dim=0) if x.shape[0] >= 3 else [x, x, x]
    rgb = torch.stack([g.mean(0) for g in groups])
    low = rgb.amin(dim=(1, 2), keepdim=True)
    high = rgb.amax(dim=(1, 2), keepdim=True)
    rgb = ((rgb - low) / (high - low).clamp_min(1e-6) * 255).to(torch.uint8)
    image = Image.fromarray(rgb.permute(1, 2, 0).numpy(), "RGB")
    scale = PREVIEW_SIDE / max(width, height)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    buffer = io.BytesIO()
    image.resize(size, Image.Resampling.BILINEAR).save(buffer, "JPEG", quality=70)
    return buffer.getvalue()


class StepReporter:
    """diffusers' ``callback_on_step_end``: progress every step, a preview every few steps."""

    def __init__(
        self,
        progress: Callable[..., None],
        steps: int,
        width: int,
        height: int,
        previews: int = 4,
        unpack: Callable[[Any, Any], Any] | None = None,
    ) -> None:
        self.progress = progress
        self.steps = max(1, steps)
        self.width, self.height = width, height
        self.every = max(1, math.ceil(self.steps / previews))
        self.unpack = unpack
        """(pipe, latents) -> latents the preview can read, for pipelines whose packing it cannot guess."""

    def __call__(self, pipe, step: int, timestep, callback_kwargs: dict[str, Any]) -> dict[str, Any]:
        done = step + 1
        preview = None
        latents = callback_kwargs.get("latents")
        if latents is not None and (done % self.every == 0 or done == self.steps):
            preview = latent_preview(self.unpack(pipe, latents) if self.unpack else latents, self.width, self.height)
        # The last 1% is the VAE decode and the PNG: "done" is reported by the worker, not here.
        self.progress(99.0 * done / self.steps, preview)
        return callback_kwargs


def lora_file(model: LoadedModel, name: str) -> Path:
    lora = next(l for l in model.spec.loras if l.name == name)
    if lora.source.path:
        return Path(lora.source.path).expanduser()
    return Path(model.extras["weights_path"]) / "loras" / f"{name}.safetensors"


@contextlib.contextmanager
def loras_applied(model: LoadedModel, requested: list[Lora] | None) -> Iterator[None]:
    """Load the job's LoRAs with their weights, and always unload them afterwards."""
    if not requested:
        yield
        return
    pipe = model.handle
    if not hasattr(pipe, "load_lora_weights"):
        raise JobFailure("INVALID_INPUT", f"Model {model.spec.slug} does not take LoRAs.")
    names, weights = [], []
    try:
        for item in requested:
            path = lora_file(model, item.name)
            if not path.is_file():
                raise JobFailure("INVALID_INPUT", f"LoRA {item.name} is listed but not installed at {path}.")
            adapter = f"job_{len(names)}_{item.name}"
            pipe.load_lora_weights(str(path.parent), weight_name=path.name, adapter_name=adapter)
            names.append(adapter)
            weights.append(float(item.weight))
        pipe.set_adapters(names, adapter_weights=weights)
        yield
    finally:
        if names:
            # Unloading restores the base weights exactly, so the next job sees the plain model.
            pipe.unload_lora_weights()
