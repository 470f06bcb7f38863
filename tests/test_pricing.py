"""The price formulas reproduce every example of dryapi-docs/pricing.md exactly."""

import pytest

from model_registry import price_of
from model_registry.catalog import builtin_specs

SPECS = {spec.slug: spec for spec in builtin_specs()}


@pytest.mark.parametrize(
    ("slug", "params", "expected"),
    [
        ("Flux1schnell", {"width": 512, "height": 512, "steps": 4}, 0.00136),
        ("ZImageTurbo_INT8", {"width": 512, "height": 512, "steps": 4}, 0.00405),
        ("Flux_2_Klein_4B_BF16", {"width": 512, "height": 512, "steps": 4}, 0.00186),
        ("QwenImageEdit_Plus_NF4", {"width": 512, "height": 512, "steps": 20}, 0.0132),
        ("Kokoro", {"count_text": 1_000_000, "speed": 1}, 0.77),
        ("Kokoro", {"count_text": 1_000_000, "speed": 2}, 0.385),
        ("Kokoro", {"count_text": 1_000_000, "speed": 0.5}, 1.54),
        ("WhisperLargeV3", {"duration_seconds": 3600}, 0.021),
        ("WhisperLargeV3", {"duration_seconds": 300}, 0.003613),
        ("Nanonets_Ocr_S_F16", {"width": 1024, "height": 1024, "characters": 1000}, 0.00928),
        ("Nanonets_Ocr_S_F16", {"width": 1024, "height": 1024, "characters": 20}, 0.000186),
        ("Nanonets_Ocr_S_F16", {"width": 1024, "height": 1024, "characters": 1500}, 0.01392),
        ("Ltxv_13B_0_9_8_Distilled_FP8", {"width": 256, "height": 256, "frames": 60, "fps": 30, "steps": 1}, 0.001737),
        ("Bge_M3_INT8", {"tokens": 1000}, 0.000068),
    ],
)
def test_documented_prices(slug, params, expected):
    assert price_of(SPECS[slug], params) == expected


def test_price_scales_with_resolution_and_steps():
    spec = SPECS["Flux1schnell"]
    base = price_of(spec, {"width": 512, "height": 512, "steps": 4})
    assert price_of(spec, {"width": 1024, "height": 1024, "steps": 4}) == pytest.approx(base * 4)
    assert price_of(spec, {"width": 512, "height": 512, "steps": 8}) == pytest.approx(base * 2)


def test_music_price_scales_with_duration_and_steps():
    spec = SPECS["ACE-Step-v1.5-turbo"]
    short = price_of(spec, {"duration": 30, "inference_steps": 8})
    assert price_of(spec, {"duration": 60, "inference_steps": 8}) == pytest.approx(short * 2)
    assert price_of(spec, {"duration": 30, "inference_steps": 32}) == pytest.approx(short * 4)


def test_tiny_jobs_are_never_free():
    assert price_of(SPECS["Bge_M3_INT8"], {"tokens": 3}) == 0.000001
