"""The model registry: the built-in catalog, user models from config, weights on disk."""

from pathlib import Path

import pytest

from model_registry import ModelRegistry, UnknownModel, WeightsLocator
from model_registry.errors import CatalogError, DuplicateModel

DOCS_MODELS = [
    "Flux1schnell",
    "ZImageTurbo_INT8",
    "Flux_2_Klein_4B_BF16",
    "QwenImageEdit_Plus_NF4",
    "Ltxv_13B_0_9_8_Distilled_FP8",
    "Ltx2_19B_Dist_FP8",
    "Ltx2_3_19B_Dist_INT8",
    "Kokoro",
    "Chatterbox",
    "Qwen3_TTS",
    "ACE-Step-v1.5-turbo",
    "Bge_M3_INT8",
    "Nanonets_Ocr_S_F16",
    "WhisperLargeV3",
    "Ben2",
    "RealESRGAN_x4plus",
]


def registry(tmp_path: Path, config: Path | None = None) -> ModelRegistry:
    return ModelRegistry.from_files(WeightsLocator(tmp_path / "models", tmp_path / "hub"), config)


def test_catalog_holds_every_model_the_docs_name(tmp_path):
    reg = registry(tmp_path)
    for slug in DOCS_MODELS:
        spec = reg.get(slug)
        assert spec.source.repo_id, slug
        assert spec.vram_bytes > 0
        assert spec.quantization


def test_aliases_resolve_to_the_same_model(tmp_path):
    reg = registry(tmp_path)
    assert reg.get("whisper-3-large").slug == "WhisperLargeV3"
    assert reg.get("Bge_M3_FP16").slug == "Bge_M3_INT8"
    assert reg.get("flux1SCHNELL").slug == "Flux1schnell"


def test_unknown_slug_raises(tmp_path):
    with pytest.raises(UnknownModel):
        registry(tmp_path).get("nonexistent-model-xyz-999")


def test_embedded_default_is_installed_and_runnable(tmp_path):
    reg = registry(tmp_path)
    availability = reg.availability(reg.get("MiniLM_L6_v2"))
    assert availability.installed and availability.runnable
    assert (availability.path / "model.safetensors").is_file()


def test_missing_weights_name_the_model_and_how_to_install(tmp_path):
    reg = registry(tmp_path)
    availability = reg.availability(reg.get("Flux1schnell"))
    assert not availability.installed
    assert "Flux1schnell" in availability.reason and "drylocal pull Flux1schnell" in availability.reason


def test_weights_found_in_the_drylocal_models_folder(tmp_path):
    folder = tmp_path / "models" / "Chatterbox"
    folder.mkdir(parents=True)
    (folder / "config.json").write_text("{}")
    reg = registry(tmp_path)
    availability = reg.availability(reg.get("Chatterbox"))
    assert availability.installed and availability.runnable and availability.path == folder


def test_installed_model_of_a_planned_backend_is_not_runnable(tmp_path, monkeypatch):
    from model_registry import backends

    # A catalog backend whose loader has not landed yet: its weights are found but nothing runs them.
    monkeypatch.delitem(backends.BACKENDS, "chatterbox")
    monkeypatch.setattr(backends, "PLANNED_BACKENDS", frozenset({"chatterbox"}))
    folder = tmp_path / "models" / "Chatterbox"
    folder.mkdir(parents=True)
    (folder / "config.json").write_text("{}")
    reg = registry(tmp_path)
    availability = reg.availability(reg.get("Chatterbox"))
    assert availability.installed and availability.path == folder
    assert not availability.runnable and "backend 'chatterbox'" in availability.reason


def test_weights_found_in_the_hugging_face_cache(tmp_path):
    from tests.checkpoints import place_in_hf_cache

    source = tmp_path / "src"
    source.mkdir()
    (source / "config.json").write_text("{}")
    snapshot = place_in_hf_cache(source, tmp_path / "hub", "BAAI/bge-m3")
    reg = registry(tmp_path)
    assert reg.availability(reg.get("Bge_M3_INT8")).path == snapshot


def test_user_adds_a_model_in_config_without_code(tmp_path):
    config = tmp_path / "config.toml"
    config.write_text(
        """
[[models]]
slug = "MyEmbedder"
name = "My embedder"
inference_types = ["txt2embedding"]
backend = "sentence-transformers"
vram_bytes = 100_000_000
source = { path = "%s" }
price = { formula = "tokens", rates = { per_1k_tokens = 0.0001 } }
"""
        % (tmp_path / "mine")
    )
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "modules.json").write_text("[]")
    reg = registry(tmp_path, config)
    spec = reg.get("MyEmbedder")
    assert reg.availability(spec).runnable
    assert spec in reg.for_types(["txt2embedding"])


def test_duplicate_slug_fails_loudly(tmp_path):
    config = tmp_path / "config.toml"
    config.write_text(
        """
[[models]]
slug = "Kokoro"
name = "again"
inference_types = ["txt2audio"]
backend = "kokoro"
vram_bytes = 1
source = { repo_id = "x/y" }
price = { formula = "characters", rates = { per_million_chars = 1 } }
"""
    )
    with pytest.raises(DuplicateModel):
        registry(tmp_path, config)


def test_config_row_with_unknown_field_or_backend_is_refused(tmp_path):
    config = tmp_path / "config.toml"
    config.write_text('[[models]]\nslug = "X"\nname = "x"\ninference_types = ["txt2img"]\nbackend = "nope"\n'
                      'vram_bytes = 1\nsource = { repo_id = "a/b" }\nprice = { formula = "tokens" }\n')
    with pytest.raises(CatalogError):
        registry(tmp_path, config)
    config.write_text('[[models]]\nslug = "X"\nnmae = "x"\n')
    with pytest.raises(CatalogError):
        registry(tmp_path, config)


def test_filter_by_inference_type_accepts_client_spellings(tmp_path):
    reg = registry(tmp_path)
    assert {s.slug for s in reg.for_types(["vid2txt"])} == {"WhisperLargeV3", "WhisperBase"}
    assert {s.slug for s in reg.for_types(["img_upscale", "img-rmbg"])} == {"RealESRGAN_x4plus", "U2Netp", "Ben2", "RMBG-1.4"}


def test_weights_removed_or_added_are_seen_at_once_despite_the_locator_remembering_finds(tmp_path):
    folder = tmp_path / "models" / "Chatterbox"
    reg = registry(tmp_path)
    spec = reg.get("Chatterbox")
    assert reg.locator.find(spec) is None
    folder.mkdir(parents=True)
    (folder / "config.json").write_text("{}")
    assert reg.locator.find(spec) == folder  # a miss is never remembered
    assert reg.locator.find(spec) == folder
    (folder / "config.json").unlink()
    folder.rmdir()
    assert reg.locator.find(spec) is None  # a remembered find is checked before it is trusted
    assert not reg.availability(spec).installed
