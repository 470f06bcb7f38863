"""The checks task modules compose: a request's values against the chosen model's ``info.limits`` and
``info.features``.

Problems are collected on the :class:`Checking` and answered at once as a 422 with one entry per
field, as the hosted service does. Width and height are rounded to the model's ``resolution_step``;
parameters a model does not support (guidance, negative prompt, steps) are dropped, as the docs allow.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from engine.media import has_audio_track, media_duration
from model_registry import ModelSpec

if TYPE_CHECKING:
    from engine import Engine
    from engine.tasks._definition import Task

__all__ = (
    "Checking",
    "UploadedFile",
    "dimensions",
    "fmt",
    "guidance",
    "image_limits",
    "loras",
    "negative_prompt",
    "num",
    "seed",
    "size_from_image",
    "steps",
    "transcription",
)

MAX_SEED = 2**32 - 1


class UploadedFile(Protocol):
    filename: str
    content_type: str
    data: bytes


@dataclass
class Checking:
    task: Task
    spec: ModelSpec
    values: dict[str, Any]
    files: dict[str, list[UploadedFile]]
    image_sizes: dict[str, list[tuple[int, int]]]
    engine: Engine
    for_price: bool
    errors: dict[str, list[str]] = field(default_factory=dict)

    def error(self, name: str, message: str) -> None:
        self.errors.setdefault(name, []).append(message)

    def between(self, name: str, low_key: str, high_key: str, label: str | None = None) -> None:
        value = self.values.get(name)
        if value is None:
            return
        low, high = self.spec.limit(low_key), self.spec.limit(high_key)
        low = num(low)
        high = num(high)
        if (low is not None and value < low) or (high is not None and value > high):
            self.error(name, f"The {label or name.replace('_', ' ')} must be between {fmt(low)} and {fmt(high)}.")

    def default(self, name: str, fallback: Any = None) -> None:
        if self.values.get(name) is None:
            value = self.spec.default(name, fallback)
            if value is not None:
                self.values[name] = value



def num(value: Any) -> float | None:
    if value is None:
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def fmt(value: float | None) -> str:
    if value is None:
        return "any"
    return str(int(value)) if float(value).is_integer() else str(value)



def dimensions(ctx: Checking, required: bool) -> None:
    step = int(num(ctx.spec.limit("resolution_step")) or 1)
    for name in ("width", "height"):
        if ctx.values.get(name) is None:
            continue
        ctx.between(name, f"min_{name}", f"max_{name}")
        if name in ctx.errors:
            continue
        low = int(num(ctx.spec.limit(f"min_{name}")) or step)
        high = int(num(ctx.spec.limit(f"max_{name}")) or 1 << 16)
        # The docs: sizes not aligned to resolution_step are adjusted, not refused.
        rounded = max(low, min(high, round(ctx.values[name] / step) * step))
        ctx.values[name] = max(step, rounded)
    if required:
        for name in ("width", "height"):
            if ctx.values.get(name) is None and name not in ctx.errors:
                ctx.default(name)


def seed(ctx: Checking) -> None:
    seed = ctx.values.get("seed")
    if seed is not None and not -1 <= seed <= MAX_SEED:
        ctx.error("seed", f"The seed must be between -1 and {MAX_SEED}.")
        return
    if not ctx.for_price and (seed is None or seed == -1):
        # Drawn now and stored with the job, so a re-run after a crash gives the same output.
        ctx.values["seed"] = random.randint(0, MAX_SEED)


def steps(ctx: Checking, name: str = "steps") -> None:
    if not ctx.spec.feature("supports_steps", True):
        ctx.values.pop(name, None)
    ctx.between(name, "min_steps", "max_steps")
    # A model without a default step count gets 20, kept inside its own limits.
    low, high = num(ctx.spec.limit("min_steps")) or 1, num(ctx.spec.limit("max_steps")) or 20
    ctx.default(name, int(max(low, min(20, high))))


def guidance(ctx: Checking, name: str = "guidance") -> None:
    if not ctx.spec.feature("supports_guidance", True):
        ctx.values.pop(name, None)
        return
    ctx.between(name, "min_guidance", "max_guidance")
    ctx.default(name, ctx.spec.default("guidance_scale"))


def negative_prompt(ctx: Checking) -> None:
    if not ctx.spec.feature("supports_negative_prompt", True):
        ctx.values.pop("negative_prompt", None)


def loras(ctx: Checking) -> None:
    requested = ctx.values.get("loras") or []
    known = {lora.name: lora for lora in ctx.spec.loras}
    for lora in requested:
        if lora["name"] not in known:
            ctx.error("loras", f"The selected lora {lora['name']} is invalid for model {ctx.spec.slug}.")
        elif not -4.0 <= lora["weight"] <= 4.0:
            ctx.error("loras", f"The weight of lora {lora['name']} must be between -4 and 4.")


def image_limits(ctx: Checking, name: str) -> None:
    for width, height in ctx.image_sizes.get(name, []):
        max_w, max_h = num(ctx.spec.limit("max_width")), num(ctx.spec.limit("max_height"))
        min_w, min_h = num(ctx.spec.limit("min_width")), num(ctx.spec.limit("min_height"))
        if (max_w and width > max_w) or (max_h and height > max_h):
            ctx.error(name, f"The {name.replace('_', ' ')} must be at most {fmt(max_w)}x{fmt(max_h)} pixels.")
        if (min_w and width < min_w) or (min_h and height < min_h):
            ctx.error(name, f"The {name.replace('_', ' ')} must be at least {fmt(min_w)}x{fmt(min_h)} pixels.")


def size_from_image(ctx: Checking, name: str) -> None:
    """Price of an image task: the uploaded image's size, or ``width`` and ``height``."""
    sizes = ctx.image_sizes.get(name)
    if sizes:
        ctx.values["width"], ctx.values["height"] = sizes[0]
    elif ctx.for_price and (ctx.values.get("width") is None or ctx.values.get("height") is None):
        ctx.error(name, f"The {name} field is required when width and height are not present.")



def _should_probe(ctx: Checking, url_field: str | None, upload: str | None, seconds: float | None) -> bool:
    if (upload and ctx.files.get(upload)) or url_field is None or not ctx.values.get(url_field) or url_field in ctx.errors:
        return False
    if ctx.for_price:
        return seconds is None  # a given duration prices the job without asking the site
    # No point asking the site about media for a model that cannot run: the 422 on model comes first.
    return ctx.engine.registry.availability(ctx.spec).runnable


def _probe_url(ctx: Checking, url_field: str):
    """What the site says about the media: read before the job is accepted, to price and refuse it."""
    from engine import fetch

    try:
        info = fetch.probe(str(ctx.values[url_field]), ctx.engine.settings.fetch_allowed_hosts)
    except fetch.FetchError as exc:
        ctx.error(url_field, str(exc))
        return None
    if info.is_live:
        what = "Space" if ctx.task.name == "aud2txt" else "stream"
        ctx.error(url_field, f"This {what} is live; live media cannot be transcribed. Send it again once it has ended.")
        return None
    return info


def transcription(ctx: Checking, *, upload: str | None = None, url_field: str | None = None) -> None:
    """Media to transcribe, from an upload or a URL: it has sound, it is within the model's length
    limit, and its duration is known (read, or asked of the site) so the job can be priced."""
    ctx.values.setdefault("include_ts", False)
    seconds = ctx.values.get("duration_seconds")
    if upload and ctx.files.get(upload):
        item = ctx.files[upload][0]
        if has_audio_track(item.data) is False:
            ctx.error(upload, f"The {upload} has no audio track to transcribe.")
            return
        measured = media_duration(item.data, item.filename)
        if measured is not None:
            seconds = measured
    if seconds is not None and seconds < 0:
        ctx.error("duration_seconds", "The duration seconds must be at least 0.")
        return
    if _should_probe(ctx, url_field, upload, seconds):
        probed = _probe_url(ctx, url_field)
        if probed is None:
            return
        if probed.duration_seconds is not None:
            seconds = probed.duration_seconds
    limit = num(ctx.spec.limit("max_video_duration_seconds"))
    if seconds is not None and limit and seconds > limit:
        where = upload or (url_field if ctx.values.get(url_field) else "duration_seconds")
        ctx.error(where, f"The media may last at most {fmt(limit / 60)} minutes.")
    if ctx.for_price and seconds is None:
        target = upload or url_field or "media"
        ctx.errors.pop(target, None)
        ctx.error(
            "duration_seconds",
            f"The duration seconds field is required when the duration of {target.replace('_', ' ')} cannot be read.",
        )
    ctx.values["duration_seconds"] = seconds or 0.0


