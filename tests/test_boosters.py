"""Prompt boosters on a tiny random-weight chat LLM placed where the catalog's booster model lives."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from engine.tasks.prompt_booster import parse_answer
from tests.conftest import running_api
from tests.llm_checkpoint import build_tiny_chat_llm


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
