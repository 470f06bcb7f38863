"""Validates a task request against its form and the chosen model's ``info.limits`` and ``info.features``.

All problems are collected and answered at once as a 422 with one entry per field, as the hosted
service does. Width and height are rounded to the model's ``resolution_step``; parameters a model
does not support (guidance, negative prompt, steps) are dropped, as the docs allow.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from engine import Engine, Upload
from engine.errors import InvalidRequest
from engine.tasks import TASK_INFERENCE_TYPE, pipeline_for
from model_registry import ModelSpec, UnknownModel
from server.body import FormFile, RequestBody
from server.fields import FILE_RULES, CoercionError, coerce
from server.forms import TaskForm
from server.media import has_audio_track, image_size, media_duration

__all__ = ("Validated", "validate_task")

_MAX_SEED = 2**32 - 1


@dataclass
class Validated:
    spec: ModelSpec
    params: dict[str, Any]
    uploads: list[Upload]
    webhook_url: str | None = None
    return_inline: bool = False


@dataclass
class _Context:
    form: TaskForm
    spec: ModelSpec
    values: dict[str, Any]
    files: dict[str, list[FormFile]]
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
        low = _num(low)
        high = _num(high)
        if (low is not None and value < low) or (high is not None and value > high):
            self.error(name, f"The {label or name.replace('_', ' ')} must be between {_fmt(low)} and {_fmt(high)}.")

    def default(self, name: str, fallback: Any = None) -> None:
        if self.values.get(name) is None:
            value = self.spec.default(name, fallback)
            if value is not None:
                self.values[name] = value


def validate_task(form: TaskForm, body: RequestBody, engine: Engine, *, for_price: bool) -> Validated:
    errors: dict[str, list[str]] = {}
    spec = _resolve_model(form, body.fields.get("model"), engine, errors)
    values = _coerce_fields(form, body, for_price, errors)
    files, sizes = _check_files(form, body, for_price, errors)
    if spec is not None:
        ctx = _Context(form, spec, values, files, sizes, engine, for_price, errors)
        _CHECKS[form.task](ctx)
        values = ctx.values
    if errors:
        raise InvalidRequest(errors, _summary(errors))
    assert spec is not None
    if not for_price:
        _require_runnable(form, spec, engine)
    uploads = [
        Upload(name, f.filename, f.content_type, f.data) for name, items in files.items() for f in items
    ]
    # The URL is checked by Engine.submit, which knows whose job it is (only the owner may call this machine).
    webhook_url = values.pop("webhook_url", None)
    return_inline = bool(values.pop("return_result_in_response", False))
    return Validated(spec, values, uploads, webhook_url, return_inline)


# ---------------------------------------------------------------------------- generic steps
def _resolve_model(form: TaskForm, raw: Any, engine: Engine, errors: dict) -> ModelSpec | None:
    inference_type = TASK_INFERENCE_TYPE[form.task]
    if raw in (None, "", []):
        if form.model_required:
            errors["model"] = ["The model field is required."]
            return None
        spec = engine.registry.first_runnable(inference_type)
        return spec or next(iter(engine.registry.for_types([inference_type])), None)
    if not isinstance(raw, str):
        errors["model"] = ["The model field must be a string."]
        return None
    try:
        spec = engine.registry.get(raw)
    except UnknownModel:
        errors["model"] = ["The selected model does not exist."]
        return None
    if not spec.supports(inference_type):
        errors["model"] = [f"The selected model does not support {form.label}."]
        return None
    return spec


def _coerce_fields(form: TaskForm, body: RequestBody, for_price: bool, errors: dict) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for spec_field in form.fields:
        if spec_field.kind in ("file", "files") or spec_field.price == ("no" if for_price else "only"):
            continue
        raw = None
        for name in (spec_field.name, *spec_field.aliases):
            candidate = body.fields.get(name)
            if candidate not in (None, "", []):
                raw = candidate
                break
        if raw is None:
            required = spec_field.price == "required" if for_price else spec_field.required
            if required:
                errors.setdefault(spec_field.name, []).append(
                    f"The {spec_field.name.replace('_', ' ')} field is required."
                )
            continue
        try:
            values[spec_field.name] = coerce(spec_field, raw)
        except CoercionError as exc:
            errors.setdefault(spec_field.name, []).append(str(exc))
    return values


def _check_files(form: TaskForm, body: RequestBody, for_price: bool, errors: dict):
    files: dict[str, list[FormFile]] = {}
    sizes: dict[str, list[tuple[int, int]]] = {}
    for spec_field in form.fields:
        if spec_field.kind not in ("file", "files"):
            continue
        items = body.files.get(spec_field.name, [])
        if not items:
            if spec_field.required and not for_price:
                errors.setdefault(spec_field.name, []).append(
                    f"The {spec_field.name.replace('_', ' ')} field is required."
                )
            continue
        rule = FILE_RULES[spec_field.file_rule or "image"]
        label = spec_field.name.replace("_", " ")
        for item in items:
            extension = Path(item.filename).suffix.lower().lstrip(".")
            if extension not in rule.extensions:
                errors.setdefault(spec_field.name, []).append(
                    f"The {label} field must be a file of type: {', '.join(sorted(rule.extensions))}."
                )
                continue
            if len(item.data) > rule.max_bytes:
                errors.setdefault(spec_field.name, []).append(
                    f"The {label} field must not be greater than {rule.max_bytes // 1024} kilobytes."
                )
                continue
            if rule.label == "image" and extension != "svg":
                size = image_size(item.data)
                if size is None:
                    errors.setdefault(spec_field.name, []).append(f"The {label} field must be an image.")
                    continue
                sizes.setdefault(spec_field.name, []).append(size)
            files.setdefault(spec_field.name, []).append(item)
    return files, sizes


def _require_runnable(form: TaskForm, spec: ModelSpec, engine: Engine) -> None:
    availability = engine.registry.availability(spec)
    if not availability.runnable:
        raise InvalidRequest({"model": [availability.reason]}, availability.reason)
    if pipeline_for(form.task) is None:
        message = f"Model {spec.slug} is installed, but this drylocal build has no {form.task} pipeline yet."
        raise InvalidRequest({"model": [message]}, message)


def _summary(errors: dict[str, list[str]]) -> str:
    messages = [m for ms in errors.values() for m in ms]
    if len(messages) == 1:
        return messages[0]
    return f"{messages[0]} (and {len(messages) - 1} more error{'s' if len(messages) > 2 else ''})"


def _num(value: Any) -> float | None:
    if value is None:
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _fmt(value: float | None) -> str:
    if value is None:
        return "any"
    return str(int(value)) if float(value).is_integer() else str(value)


# ---------------------------------------------------------------------------- shared checks
def _dimensions(ctx: _Context, required: bool) -> None:
    step = int(_num(ctx.spec.limit("resolution_step")) or 1)
    for name in ("width", "height"):
        if ctx.values.get(name) is None:
            continue
        ctx.between(name, f"min_{name}", f"max_{name}")
        if name in ctx.errors:
            continue
        low = int(_num(ctx.spec.limit(f"min_{name}")) or step)
        high = int(_num(ctx.spec.limit(f"max_{name}")) or 1 << 16)
        # The docs: sizes not aligned to resolution_step are adjusted, not refused.
        rounded = max(low, min(high, round(ctx.values[name] / step) * step))
        ctx.values[name] = max(step, rounded)
    if required:
        for name in ("width", "height"):
            if ctx.values.get(name) is None and name not in ctx.errors:
                ctx.default(name)


def _seed(ctx: _Context) -> None:
    seed = ctx.values.get("seed")
    if seed is not None and not -1 <= seed <= _MAX_SEED:
        ctx.error("seed", f"The seed must be between -1 and {_MAX_SEED}.")
        return
    if not ctx.for_price and (seed is None or seed == -1):
        # Drawn now and stored with the job, so a re-run after a crash gives the same output.
        ctx.values["seed"] = random.randint(0, _MAX_SEED)


def _steps(ctx: _Context, name: str = "steps") -> None:
    if not ctx.spec.feature("supports_steps", True):
        ctx.values.pop(name, None)
    ctx.between(name, "min_steps", "max_steps")
    # A model without a default step count gets 20, kept inside its own limits.
    low, high = _num(ctx.spec.limit("min_steps")) or 1, _num(ctx.spec.limit("max_steps")) or 20
    ctx.default(name, int(max(low, min(20, high))))


def _guidance(ctx: _Context, name: str = "guidance") -> None:
    if not ctx.spec.feature("supports_guidance", True):
        ctx.values.pop(name, None)
        return
    ctx.between(name, "min_guidance", "max_guidance")
    ctx.default(name, ctx.spec.default("guidance_scale"))


def _negative_prompt(ctx: _Context) -> None:
    if not ctx.spec.feature("supports_negative_prompt", True):
        ctx.values.pop("negative_prompt", None)


def _loras(ctx: _Context) -> None:
    requested = ctx.values.get("loras") or []
    known = {lora.name: lora for lora in ctx.spec.loras}
    for lora in requested:
        if lora["name"] not in known:
            ctx.error("loras", f"The selected lora {lora['name']} is invalid for model {ctx.spec.slug}.")
        elif not -4.0 <= lora["weight"] <= 4.0:
            ctx.error("loras", f"The weight of lora {lora['name']} must be between -4 and 4.")


def _image_limits(ctx: _Context, name: str) -> None:
    for width, height in ctx.image_sizes.get(name, []):
        max_w, max_h = _num(ctx.spec.limit("max_width")), _num(ctx.spec.limit("max_height"))
        min_w, min_h = _num(ctx.spec.limit("min_width")), _num(ctx.spec.limit("min_height"))
        if (max_w and width > max_w) or (max_h and height > max_h):
            ctx.error(name, f"The {name.replace('_', ' ')} must be at most {_fmt(max_w)}x{_fmt(max_h)} pixels.")
        if (min_w and width < min_w) or (min_h and height < min_h):
            ctx.error(name, f"The {name.replace('_', ' ')} must be at least {_fmt(min_w)}x{_fmt(min_h)} pixels.")


def _size_from_image(ctx: _Context, name: str) -> None:
    """Price of an image task: the uploaded image's size, or ``width`` and ``height``."""
    sizes = ctx.image_sizes.get(name)
    if sizes:
        ctx.values["width"], ctx.values["height"] = sizes[0]
    elif ctx.for_price and (ctx.values.get("width") is None or ctx.values.get("height") is None):
        ctx.error(name, f"The {name} field is required when width and height are not present.")


# ---------------------------------------------------------------------------- per task
def _check_txt2img(ctx: _Context) -> None:
    _dimensions(ctx, required=True)
    _steps(ctx)
    _guidance(ctx)
    _negative_prompt(ctx)
    _loras(ctx)
    _seed(ctx)


def _check_img2img(ctx: _Context) -> None:
    single, several = ctx.files.get("image", []), ctx.files.get("images", [])
    if not ctx.for_price:
        if single and several:
            ctx.error("image", "The image field prohibits images[] from being present.")
        elif not single and not several and "image" not in ctx.errors and "images" not in ctx.errors:
            ctx.error("image", "The image field is required when images[] is not present.")
        count = len(single) + len(several)
        limit = int(_num(ctx.spec.limit("max_input_images")) or 1)
        if count > limit:
            ctx.error("images", f"The model {ctx.spec.slug} accepts at most {limit} input image{'s' if limit > 1 else ''}.")
    sizes = ctx.image_sizes.get("image", []) + ctx.image_sizes.get("images", [])
    if sizes:
        ctx.values.setdefault("width", sizes[0][0])
        ctx.values.setdefault("height", sizes[0][1])
    _dimensions(ctx, required=False)
    _steps(ctx)
    _guidance(ctx)
    _negative_prompt(ctx)
    _loras(ctx)
    _seed(ctx)


def _check_video(ctx: _Context) -> None:
    _dimensions(ctx, required=True)
    ctx.default("fps")
    ctx.between("fps", "min_fps", "max_fps", "fps")
    ctx.between("frames", "min_frames", "max_frames")
    _steps(ctx)
    _guidance(ctx)
    _negative_prompt(ctx)
    _seed(ctx)
    for name in ("first_frame_image", "last_frame_image"):
        _image_limits(ctx, name)
    if ctx.files.get("last_frame_image") and not ctx.spec.feature("supports_last_frame"):
        ctx.error("last_frame_image", f"The model {ctx.spec.slug} does not support a last frame.")


def _check_txt2audio(ctx: _Context) -> None:
    values, spec = ctx.values, ctx.spec
    if ctx.for_price:
        if values.get("text") is None and values.get("count_text") is None:
            ctx.errors.pop("text", None)
            ctx.error("text", "The text field is required when count text is not present.")
        elif "text" in ctx.errors and values.get("count_text") is not None:
            ctx.errors.pop("text")
        # Quotes may exceed one job's text limit (the docs price a million characters); never below 1.
        if values.get("count_text") is not None and values["count_text"] < 1:
            ctx.error("count_text", "The count text field must be at least 1.")
    for name in ("lang", "format", "speed", "sample_rate", "voice"):
        ctx.default(name)
    values.setdefault("mode", "custom_voice")
    text = values.get("text")
    if text is not None:
        low, high = _num(spec.limit("min_text")), _num(spec.limit("max_text"))
        if (low and len(text) < low) or (high and len(text) > high):
            ctx.error("text", f"The text must be between {_fmt(low)} and {_fmt(high)} characters.")
    ctx.between("speed", "min_speed", "max_speed")
    ratios = spec.limit("available_ratios")
    if ratios and values.get("sample_rate") is not None and int(values["sample_rate"]) not in [int(r) for r in ratios]:
        ctx.error("sample_rate", f"The sample rate must be one of: {', '.join(str(r) for r in ratios)}.")
    modes = spec.info.features.get("supported_modes") or ["custom_voice"]
    mode = values["mode"]
    if mode not in modes:
        ctx.error("mode", f"The model {spec.slug} does not support the {mode} mode; it supports: {', '.join(modes)}.")
        return
    languages = {language.slug: language for language in spec.languages}
    if languages and isinstance(values.get("lang"), str):
        language = spec.find_language(values["lang"])
        if language is None:
            ctx.error("lang", f"The selected lang is invalid. Available: {', '.join(languages)}.")
        else:
            values["lang"] = language.slug
    if ctx.for_price:
        return
    if mode == "custom_voice":
        voice = values.get("voice")
        if voice is None:
            ctx.error("voice", "The voice field is required when mode is custom_voice.")
        elif values.get("lang") in languages and languages[values["lang"]].voices:
            voices = {v.slug for v in languages[values["lang"]].voices}
            if voice not in voices:
                ctx.error("voice", f"The selected voice is invalid for lang {values['lang']}.")
    elif mode == "voice_clone":
        if not ctx.files.get("ref_audio"):
            ctx.error("ref_audio", "The ref audio field is required when mode is voice_clone.")
        else:
            item = ctx.files["ref_audio"][0]
            seconds = media_duration(item.data, item.filename)
            low = _num(spec.limit("min_ref_audio_seconds")) or 3
            high = _num(spec.limit("max_ref_audio_seconds")) or 10
            if seconds is not None and not low <= seconds <= high:
                ctx.error("ref_audio", f"The ref audio must be between {_fmt(low)} and {_fmt(high)} seconds long.")
    elif mode == "voice_design" and not values.get("instruct"):
        ctx.error("instruct", "The instruct field is required when mode is voice_design.")


def _check_txt2music(ctx: _Context) -> None:
    ctx.between("duration", "min_duration", "max_duration")
    ctx.default("inference_steps")
    if ctx.values.get("inference_steps") is not None:
        ctx.between("inference_steps", "min_steps", "max_steps", "inference steps")
    ctx.default("guidance_scale")
    ctx.between("guidance_scale", "min_guidance", "max_guidance", "guidance scale")
    ctx.between("bpm", "min_bpm", "max_bpm")
    ctx.default("format")
    if not ctx.for_price:
        ctx.default("lyrics", "[Instrumental]")
    _seed(ctx)


def _check_txt2embedding(ctx: _Context) -> None:
    value = ctx.values.get("input")
    if value is None:
        return
    texts = [value] if isinstance(value, str) else value
    max_inputs = int(_num(ctx.spec.limit("max_inputs")) or 2048)
    if len(texts) > max_inputs:
        ctx.error("input", f"The input may hold at most {max_inputs} texts.")
        return
    if any(not text.strip() for text in texts):
        ctx.error("input", "The input must not contain empty texts.")
        return
    counts = ctx.engine.count_tokens(ctx.spec, texts)
    per_input = _num(ctx.spec.limit("max_input_tokens"))
    total = _num(ctx.spec.limit("max_total_tokens"))
    for index, count in enumerate(counts):
        if per_input and count > per_input:
            where = "input" if isinstance(value, str) else f"input.{index}"
            ctx.error(where, f"The {where} has {count} tokens; model {ctx.spec.slug} accepts at most {_fmt(per_input)}.")
    if total and sum(counts) > total:
        ctx.error("input", f"The input has {sum(counts)} tokens in all; the limit is {_fmt(total)}.")
    ctx.values["tokens"] = sum(counts)


def _check_img2txt(ctx: _Context) -> None:
    _image_limits(ctx, "image")
    _size_from_image(ctx, "image")
    ctx.default("format")


def _check_image_transform(ctx: _Context) -> None:
    _image_limits(ctx, "image")
    _size_from_image(ctx, "image")


def _should_probe(ctx: _Context, url_field: str, upload: str | None, seconds: float | None) -> bool:
    if upload is not None or not ctx.values.get(url_field) or url_field in ctx.errors:
        return False
    if ctx.for_price:
        return seconds is None  # a given duration prices the job without asking the site
    # No point asking the site about media for a model that cannot run: the 422 on model comes first.
    return ctx.engine.registry.availability(ctx.spec).runnable


def _probe_url(ctx: _Context, url_field: str):
    """What the site says about the media: read before the job is accepted, to price and refuse it."""
    from engine import fetch

    try:
        info = fetch.probe(str(ctx.values[url_field]), ctx.engine.settings.fetch_allowed_hosts)
    except fetch.FetchError as exc:
        ctx.error(url_field, str(exc))
        return None
    if info.is_live:
        what = "Space" if ctx.form.task == "aud2txt" else "stream"
        ctx.error(url_field, f"This {what} is live; live media cannot be transcribed. Send it again once it has ended.")
        return None
    return info


def _check_transcription(ctx: _Context, upload: str | None) -> None:
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
    url_field = "video_url" if ctx.form.task == "vid2txt" else "audio_url"
    if _should_probe(ctx, url_field, upload, seconds):
        probed = _probe_url(ctx, url_field)
        if probed is None:
            return
        if probed.duration_seconds is not None:
            seconds = probed.duration_seconds
    limit = _num(ctx.spec.limit("max_video_duration_seconds"))
    if seconds is not None and limit and seconds > limit:
        field = upload or (url_field if ctx.values.get(url_field) else "duration_seconds")
        ctx.error(field, f"The media may last at most {_fmt(limit / 60)} minutes.")
    if ctx.for_price and seconds is None:
        target = upload or url_field
        ctx.errors.pop(target, None)
        ctx.error(
            "duration_seconds",
            f"The duration seconds field is required when the duration of {target.replace('_', ' ')} cannot be read.",
        )
    ctx.values["duration_seconds"] = seconds or 0.0


_CHECKS: dict[str, Callable[[_Context], None]] = {
    "txt2img": _check_txt2img,
    "img2img": _check_img2img,
    "txt2video": _check_video,
    "img2video": _check_video,
    "aud2video": _check_video,
    "txt2audio": _check_txt2audio,
    "txt2music": _check_txt2music,
    "txt2embedding": _check_txt2embedding,
    "img2txt": _check_img2txt,
    "img-rmbg": _check_image_transform,
    "img-upscale": _check_image_transform,
    "vid2txt": lambda ctx: _check_transcription(ctx, None),
    "aud2txt": lambda ctx: _check_transcription(ctx, None),
    "audiofile2txt": lambda ctx: _check_transcription(ctx, "audio"),
    "videofile2txt": lambda ctx: _check_transcription(ctx, "video"),
}
