"""The first load of an NF4 diffusers model keeps its quantized transformer; later loads read it and
quantize nothing, and generate the same image.

diffusers refuses bitsandbytes without a GPU (an environment check and a default device; bitsandbytes
itself runs NF4 on the CPU), so this test lifts those two and has the loader decide as it does for a GPU:
its own quantization config and dtype, not one the test supplies."""

from __future__ import annotations


import pytest
import torch

from model_registry import ModelRegistry, WeightsLocator
from tests import flux_checkpoint
from tests.nf4_on_cpu import nf4_patches
from tests.user_models import register_models, tiny_flux_entry


@pytest.fixture
def nf4_on_cpu(monkeypatch):
    for owner, name, replacement in nf4_patches():
        monkeypatch.setattr(owner, name, replacement)


def image(loaded) -> torch.Tensor:
    out = loaded.handle(prompt="a red cat", width=32, height=32, num_inference_steps=2, output_type="pt",
                        generator=torch.Generator().manual_seed(0))
    return out.images


def test_second_load_reads_the_saved_quantized_transformer(settings, tmp_path, nf4_on_cpu):
    import bitsandbytes as bnb

    # An NF4 row, as a user writes it: the loader turns ``quantization`` into its options.
    register_models(settings, tiny_flux_entry(flux_checkpoint.build_tiny_flux(tmp_path / "flux")).replace(
        'backend = "diffusers"', 'backend = "diffusers"\nquantization = "nf4"'))
    registry = ModelRegistry.from_files(WeightsLocator(settings.models_dir), settings.config_file)
    spec = registry.get("TinyFlux")
    assert spec.quantization == "nf4"
    cache = settings.models_dir / ".converted" / "TinyFlux" / f"{spec.quantization}-transformer"

    first = registry.load(spec, "cpu")
    assert first.extras["prequantized"] is False and (cache / "config.json").is_file()
    second = registry.load(spec, "cpu")
    assert second.extras["prequantized"] is True
    for loaded in (first, second):
        # What the loader chose for NF4 on a GPU, kept through the save and the reload: 4-bit NF4 linears
        # computing in bf16, the rest of the pipeline in bf16.
        assert loaded.precision == "nf4"
        linears = [m for m in loaded.handle.transformer.modules() if isinstance(m, bnb.nn.Linear4bit)]
        assert linears and {(m.weight.quant_type, m.compute_dtype) for m in linears} == {("nf4", torch.bfloat16)}
        assert loaded.handle.vae.dtype == torch.bfloat16 and loaded.handle.text_encoder.dtype == torch.bfloat16
    assert torch.equal(image(first), image(second))
