"""The catalog's weight figures agree with model_registry/weight_memory.py, which builds every component on
the meta device from its full-size config at the precision its loader gives it."""

from __future__ import annotations

import pytest

from model_registry.catalog import builtin_specs
from model_registry.weight_memory import RESERVING_BACKENDS, component_memory, computed_slugs

SPECS = {spec.slug: spec for spec in builtin_specs()}
WITH_MEMORY = [slug for slug, spec in SPECS.items() if spec.memory]
TOLERANCE = 0.10


def within(value: int, reference: int) -> bool:
    return abs(value - reference) <= TOLERANCE * reference


@pytest.mark.parametrize("slug", WITH_MEMORY)
def test_catalog_memory_matches_the_computed_weights(slug):
    spec = SPECS[slug]
    computed = {row.component: row.bytes for row in component_memory(spec)}
    assert spec.memory.keys() == computed.keys()
    wrong = {c: (spec.memory[c], computed[c]) for c in computed if not within(spec.memory[c], computed[c])}
    assert not wrong, f"{slug}: catalog vs computed bytes {wrong}"


@pytest.mark.parametrize("slug", WITH_MEMORY)
def test_vram_bytes_is_the_sum_of_the_components(slug):
    spec = SPECS[slug]
    weights = sum(spec.memory.values())
    if spec.backend in RESERVING_BACKENDS:
        assert spec.vram_bytes >= weights * (1 - TOLERANCE)
    else:
        assert within(spec.vram_bytes, weights), f"{slug}: vram_bytes {spec.vram_bytes:_} vs components {weights:_}"


def test_every_computed_model_has_its_figures_in_the_catalog():
    assert sorted(computed_slugs()) == sorted(WITH_MEMORY)


QUANTIZING = [slug for slug, spec in SPECS.items() if spec.quantized_memory]


def test_every_nf4_int8_and_fp8_diffusers_model_has_its_quantized_encoders_figures():
    from model_registry.footprint import encoders_to_quantize

    assert sorted(QUANTIZING) == sorted(slug for slug, spec in SPECS.items() if encoders_to_quantize(spec))
    assert {"QwenImageEdit_Plus_NF4", "Ltx2_19B_Dist_FP8", "Ltx2_3_19B_Dist_INT8"} <= set(QUANTIZING)


@pytest.mark.parametrize("slug", QUANTIZING)
def test_catalog_quantized_encoders_match_the_computed_weights(slug):
    spec = SPECS[slug]
    computed = {row.component: row.bytes for row in component_memory(spec, quantized_encoders=True)}
    assert spec.quantized_memory.keys() == computed.keys()
    assert all(within(spec.quantized_memory[c], computed[c]) for c in computed), (spec.quantized_memory, computed)
    # Quantized, an encoder keeps its embeddings and norms in 16 bits at most: between a quarter and ~70 %.
    assert all(0.25 < computed[c] / spec.memory[c] < 0.7 for c in computed), computed
