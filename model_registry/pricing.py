"""dryAPI's price formulas. One function per formula; a spec names its formula and rates.

The rates reproduce the examples of dryapi-docs/pricing.md exactly (tests/test_pricing.py):
Flux1schnell 512x512 at 4 steps = 0.00136 USD, TTS 0.77 USD per million characters, transcription
0.021 USD for an hour and 0.003613 for 5 minutes, OCR 0.00928 per 1,000 characters at 1024x1024,
video 0.001737 for 2 s at 256x256. Prices are rounded *up* to the micro-dollar, so no job is free.
"""

from __future__ import annotations

from decimal import ROUND_CEILING, Decimal
from typing import Any, Callable, Mapping

from model_registry.spec import ModelSpec

__all__ = ("FORMULAS", "SETTLED_AFTER_RUN", "price_of", "settled_price")

_MICRO = Decimal("0.000001")


def _d(value: Any) -> Decimal:
    return Decimal(str(value))


def _area(params: Mapping[str, Any], side: int) -> Decimal:
    return _d(params.get("width") or side) * _d(params.get("height") or side) / (side * side)


def image_steps(rates: Mapping[str, float], p: Mapping[str, Any]) -> Decimal:
    """Per denoising step of a 512x512 image, scaled by pixel count."""
    return _d(rates["per_step_512"]) * _area(p, 512) * _d(p.get("steps") or 1)


def video_seconds(rates: Mapping[str, float], p: Mapping[str, Any]) -> Decimal:
    """Per second of 256x256 video at the model's reference step count."""
    seconds = _d(p["frames"]) / _d(p.get("fps") or 24)
    steps = _d(p.get("steps") or rates.get("reference_steps", 1)) / _d(rates.get("reference_steps", 1))
    return _d(rates["per_second_256"]) * _area(p, 256) * seconds * steps


def characters(rates: Mapping[str, float], p: Mapping[str, Any]) -> Decimal:
    """Per character; fast speech costs less (2x speed = 0.5x cost), slow speech more."""
    count = p.get("count_text")
    if count is None:
        count = len(p.get("text") or "")
    speed = _d(p.get("speed") or 1)
    return _d(rates["per_million_chars"]) * _d(count) / 1_000_000 / speed


def audio_seconds_steps(rates: Mapping[str, float], p: Mapping[str, Any]) -> Decimal:
    steps = _d(p.get("inference_steps") or rates.get("reference_steps", 8))
    return _d(rates["per_second"]) * _d(p["duration"]) * steps / _d(rates.get("reference_steps", 8))


def tokens(rates: Mapping[str, float], p: Mapping[str, Any]) -> Decimal:
    return _d(rates["per_1k_tokens"]) * _d(p["tokens"]) / 1000


def audio_hours(rates: Mapping[str, float], p: Mapping[str, Any]) -> Decimal:
    """A per-job part (fetch, decode, warm-up) plus a per-hour part; together 0.021 USD for an hour."""
    return _d(rates["per_job"]) + _d(rates["per_hour"]) * _d(p["duration_seconds"]) / 3600


def ocr_characters(rates: Mapping[str, float], p: Mapping[str, Any]) -> Decimal:
    """Per 1,000 output characters of a 1024x1024 image; a quote before the job assumes 1,000."""
    chars = p.get("characters")
    return _d(rates["per_1k_chars_1024"]) * _area(p, 1024) * _d(1000 if chars is None else chars) / 1000


def megapixels(rates: Mapping[str, float], p: Mapping[str, Any]) -> Decimal:
    """Per megapixel of the input; a video (vid-upscale, vid-rmbg) pays it for each of its frames."""
    area = _d(p.get("width") or 1024) * _d(p.get("height") or 1024) / 1_000_000
    return _d(rates["per_megapixel"]) * area * _d(p.get("frames") or 1)


def booster_characters(rates: Mapping[str, float], p: Mapping[str, Any]) -> Decimal:
    length = len(p.get("prompt") or "") + len(p.get("negative_prompt") or "") + len(p.get("topic") or "")
    return max(_d(rates["per_char"]) * length, _d(rates.get("minimum", 0)))


FORMULAS: dict[str, Callable[[Mapping[str, float], Mapping[str, Any]], Decimal]] = {
    f.__name__: f
    for f in (
        image_steps,
        video_seconds,
        characters,
        audio_seconds_steps,
        tokens,
        audio_hours,
        ocr_characters,
        megapixels,
        booster_characters,
    )
}


SETTLED_AFTER_RUN = {"audio_hours": "duration_seconds", "ocr_characters": "characters"}
"""Formulas whose true amount is known only after the run (the duration the audio decodes to, the
characters OCR read): a job of them is charged its quote up front and settled to this figure of its
result's meta; a file's header or a 1,000-character guess never decides what it costs."""


def settled_price(spec: ModelSpec, params: Mapping[str, Any], meta: Mapping[str, Any]) -> float | None:
    """The job's price from what it turned out to be, or None when its formula settles nothing."""
    key = SETTLED_AFTER_RUN.get(spec.price.formula)
    if key is None or meta.get(key) is None:
        return None
    return price_of(spec, {**params, key: meta[key]})


def price_of(spec: ModelSpec, params: Mapping[str, Any]) -> float:
    """The USD price of one job of ``spec`` with validated ``params``."""
    exact = FORMULAS[spec.price.formula](spec.price.rates, params)
    return float(exact.quantize(_MICRO, rounding=ROUND_CEILING))
