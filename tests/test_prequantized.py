"""The first load of an NF4 diffusers model keeps its quantized transformer; later loads read it and
quantize nothing, and generate the same image.

diffusers refuses bitsandbytes without a GPU (an environment check and a default device; bitsandbytes
itself runs NF4 on the CPU), so this test lifts those two and asks the loader for what it asks on a GPU."""

from __future__ import annotations

import time

import pytest
import torch

from model_registry import ModelRegistry, WeightsLocator
from model_registry.loaders import diffusers as diffusers_loader
from tests import flux_checkpoint
from tests.user_models import register_models, tiny_flux_entry


@pytest.fixture
def nf4_on_cpu(monkeypatch):
    from diffusers import PipelineQuantizationConfig
    from diffusers.quantizers.bitsandbytes.bnb_quantizer import BnB4BitDiffusersQuantizer

    def gpu_options(spec, device):
        config = PipelineQuantizationConfig(
            quant_backend="bitsandbytes_4bit",
            quant_kwargs={"load_in_4bit": True, "bnb_4bit_quant_type": "nf4", "bnb_4bit_compute_dtype": torch.float32},
            components_to_quantize=["transformer"],
        )
        return {"dtype": torch.float32, "quantization_config": config}, "nf4"

    monkeypatch.setattr(diffusers_loader, "_options", gpu_options)
    monkeypatch.setattr(BnB4BitDiffusersQuantizer, "validate_environment", lambda self, *a, **k: None)
    monkeypatch.setattr(BnB4BitDiffusersQuantizer, "update_device_map", lambda self, device_map: device_map or {"": "cpu"})


def image(loaded) -> torch.Tensor:
    out = loaded.handle(prompt="a red cat", width=32, height=32, num_inference_steps=2, output_type="pt",
                        generator=torch.Generator().manual_seed(0))
    return out.images


def test_second_load_reads_the_saved_quantized_transformer(settings, tmp_path, nf4_on_cpu):
    import bitsandbytes as bnb

    register_models(settings, tiny_flux_entry(flux_checkpoint.build_tiny_flux(tmp_path / "flux")))
    registry = ModelRegistry.from_files(WeightsLocator(settings.models_dir), settings.config_file)
    spec = registry.get("TinyFlux")
    cache = settings.models_dir / ".converted" / "TinyFlux" / f"{spec.quantization}-transformer"

    first = registry.load(spec, "cpu")
    assert first.extras["prequantized"] is False and (cache / "config.json").is_file()
    second = registry.load(spec, "cpu")
    assert second.extras["prequantized"] is True
    for loaded in (first, second):
        assert any(isinstance(m, bnb.nn.Linear4bit) for m in loaded.handle.transformer.modules())
    assert torch.equal(image(first), image(second))
