"""Which precision and quantization each loader asks for, per device: the slug's promise, checked
without a GPU (the configs are built, not applied)."""

from __future__ import annotations


import pytest
import torch

from model_registry import ModelRegistry, WeightsLocator
from model_registry.loaders import diffusers as diffusers_loader
from model_registry.loaders.faster_whisper import compute_type


@pytest.fixture(scope="module")
def catalog(tmp_path_factory) -> ModelRegistry:
    return ModelRegistry.from_files(WeightsLocator(tmp_path_factory.mktemp("models")))


def test_cpu_runs_everything_in_float32(catalog):
    for slug in ("Flux1schnell", "ZImageTurbo_INT8", "QwenImageEdit_Plus_NF4"):
        options, precision = diffusers_loader._options(catalog.get(slug), "cpu")
        assert options == {"dtype": torch.float32} and precision == "fp32"


def test_gpu_quantizes_the_transformer_as_the_slug_says(catalog):
    nf4, precision = diffusers_loader._options(catalog.get("QwenImageEdit_Plus_NF4"), "cuda")
    config = nf4["quantization_config"]
    assert precision == "nf4" and config.quant_backend == "bitsandbytes_4bit"
    assert config.quant_kwargs["bnb_4bit_quant_type"] == "nf4" and config.components_to_quantize == ["transformer"]
    int8, precision = diffusers_loader._options(catalog.get("ZImageTurbo_INT8"), "cuda")
    assert precision == "int8" and int8["quantization_config"].quant_backend == "bitsandbytes_8bit"
    bf16, precision = diffusers_loader._options(catalog.get("Flux_2_Klein_4B_BF16"), "cuda")
    assert precision == "bf16" and bf16 == {"dtype": torch.bfloat16}


def test_whisper_compute_types(catalog):
    large = catalog.get("WhisperLargeV3")
    assert compute_type(large, "cpu") == "int8" and compute_type(large, "cuda") == "float16"
    assert compute_type(catalog.get("WhisperBase"), "cuda:1") == "float16"
