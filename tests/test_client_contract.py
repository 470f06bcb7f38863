"""What the real dryAPI clients parse, pinned in drylocal's own words.

The deAPI Python SDK validates ``request-status`` into ``JobStatus`` (pending, processing, done,
error) and raises ``InsufficientBalanceError`` when ``"balance" in body["errors"]``; the deAPI MCP
server reads ``errors.items()``; both pick ``data[0]`` of a filtered ``GET /models``; they and the
docs send slugs and language codes in the forms checked here.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from model_registry.embedded import provision_embedded
from server.body import RequestBody
from engine.tasks import TASKS, validate
from tests.conftest import PUBLIC_STATUSES, running_api


# ---------------------------------------------------------------- status values
def test_request_status_answers_processing_while_the_job_reports_progress(api):
    """A poll that lands between two progress steps must not answer the WebSocket-only ``in_progress``."""
    store = api.engine.jobs
    report_progress = store.report_progress
    reached, release = threading.Event(), threading.Event()

    def held_progress(job_id, progress, preview):
        changed = report_progress(job_id, progress, preview)
        reached.set()
        release.wait(30)  # the executor thread holds the job in in_progress while the test polls
        return changed

    store.report_progress = held_progress
    try:
        texts = [f"text {i}" for i in range(100)]
        request_id = api.post("txt2embedding", json={"input": texts, "model": "MiniLM_L6_v2"}).json()["data"]["request_id"]
        assert reached.wait(30)
        assert store.get(request_id).status == "in_progress"
        polled, held = [], []
        for _ in range(3):
            started = time.monotonic()
            polled.append(api.get(f"request-status/{request_id}").json()["data"])
            held.append(time.monotonic() - started)
    finally:
        release.set()
        store.report_progress = report_progress
    assert {data["status"] for data in polled} == {"processing"}
    assert all(0 < data["progress"] < 100 for data in polled)
    # An unfinished job's poll is held until it ends, but no longer than status_hold_seconds.
    hold = api.engine.settings.status_hold_seconds
    assert all(hold * 0.9 <= seconds < hold + 5 for seconds in held), held
    assert api.wait(request_id)["status"] == "done"


def test_a_poll_of_a_fast_job_is_answered_when_it_ends_not_at_the_next_poll(api):
    """The SDK polls at once and then a second later: the held first poll brings the result."""
    api.wait(api.post("txt2embedding", json={"input": "warm", "model": "MiniLM_L6_v2"}).json()["data"]["request_id"])
    request_id = api.post("txt2embedding", json={"input": "hello", "model": "MiniLM_L6_v2"}).json()["data"]["request_id"]
    started = time.monotonic()
    data = api.get(f"request-status/{request_id}").json()["data"]
    assert data["status"] == "done" and data["result_url"]
    assert time.monotonic() - started < api.engine.settings.status_hold_seconds


def test_every_polled_status_is_one_of_the_four(api):
    texts = [f"text {i}" for i in range(200)]
    request_id = api.post("txt2embedding", json={"input": texts, "model": "MiniLM_L6_v2"}).json()["data"]["request_id"]
    seen = set()
    while not seen & {"done", "error"}:
        seen.add(api.get(f"request-status/{request_id}").json()["data"]["status"])
    assert seen <= set(PUBLIC_STATUSES) and "done" in seen


# ---------------------------------------------------------------- error form
def test_validation_errors_are_an_object_of_field_messages(api):
    body = {"model": "nonexistent-model-xyz-999", "prompt": "a cat", "width": 512, "height": 512, "seed": 42}
    response = api.post("txt2img", json=body)
    body = response.json()
    assert response.status_code == 422 and body["data"] is None and body["statusCode"] == 422
    # The MCP server's smoke test: for field, messages in errors.items()
    assert {field: messages for field, messages in body["errors"].items()} == {
        "model": ["The selected model does not exist."]
    }


def test_empty_balance_names_balance_in_the_errors_object(settings):
    with running_api(settings, tier="basic", balance=0.0) as api:
        response = api.post("txt2embedding", json={"input": "a cat", "model": "MiniLM_L6_v2"})
        body = response.json()
        # The SDK: if "balance" in errors -> InsufficientBalanceError
        assert response.status_code == 422 and "balance" in body["errors"]
        assert body["message"] == "Not enough balance."


# ---------------------------------------------------------------- model discovery
@pytest.fixture(scope="module")
def embedded_defaults(tmp_path_factory) -> Path:
    """What the first ``drylocal serve`` converts from the packages: Whisper base and Real-ESRGAN."""
    root = tmp_path_factory.mktemp("embedded-defaults")
    assert set(provision_embedded(root, only=("WhisperBase", "RealESRGAN_x4plus"))) == {"WhisperBase", "RealESRGAN_x4plus"}
    return root


@pytest.fixture
def api_served(settings, embedded_defaults):
    settings.models_dir.mkdir(parents=True, exist_ok=True)
    for slug in ("WhisperBase", "RealESRGAN_x4plus"):
        (settings.models_dir / slug).symlink_to(embedded_defaults / slug)
    with running_api(settings) as api:
        yield api


@pytest.mark.parametrize(
    "inference_type",
    ["txt2embedding", "img2txt", "video2text", "audio2text", "audio_file2text", "video_file2text", "txt2audio", "img-upscale", "img-rmbg"],
)
def test_first_model_of_a_filtered_list_runs(api_served, inference_type):
    """The SDK's integration tests take data[0]; the embedded defaults run out of the box."""
    data = api_served.get("models", params={"filter[inference_types]": inference_type, "per_page": 5}).json()["data"]
    assert data and data[0]["available"] is True and inference_type in data[0]["inference_types"]
    # Runnable models first, then the rest of the catalog, still listed with the reason.
    flags = [model["available"] for model in data]
    assert flags == sorted(flags, reverse=True)


def test_uninstalled_models_stay_listed_after_the_runnable_ones(api):
    everything = api.get("models", params={"per_page": 50}).json()
    models = everything["data"]
    flags = [model["available"] for model in models]
    assert flags == sorted(flags, reverse=True) and not all(flags)
    absent = next(model for model in models if not model["installed"])
    assert f"drylocal pull {absent['slug']}" in absent["unavailable_reason"]


def test_available_filter_lists_only_runnable_models(api):
    page = api.get("models", params={"filter[available]": "true", "per_page": 50}).json()
    assert page["data"] and all(model["available"] for model in page["data"])
    assert page["meta"]["total"] == len(page["data"])
    assert "filter%5Bavailable%5D=true" in page["links"]["first"]
    runnable = {m["slug"] for m in api.get("models", params={"per_page": 50}).json()["data"] if m["available"]}
    assert {m["slug"] for m in page["data"]} == runnable


def test_every_model_states_its_licence_field(api):
    models = api.get("models", params={"per_page": 50}).json()["data"]
    assert all("license" in model for model in models)


# ---------------------------------------------------------------- slugs and language codes
def _price(api, route: str, body: dict) -> float:
    response = api.post(f"{route}/price-calculation", json=body)
    assert response.status_code == 200, response.json()
    return response.json()["data"]["price"]


def test_slugs_of_the_docs_and_clients_are_served(api):
    image = {"prompt": "a cat", "width": 512, "height": 512, "steps": 4, "seed": 1}
    for alias, slug in [("flux-2-klein-4b-bf16", "Flux_2_Klein_4B_BF16"), ("zimageturbo-int8", "ZImageTurbo_INT8")]:
        assert _price(api, "txt2img", {**image, "model": alias}) == _price(api, "txt2img", {**image, "model": slug})
    assert _price(api, "txt2img", {**image, "model": "FLUX1SCHNELL"}) == _price(api, "txt2img", {**image, "model": "Flux1schnell"})
    video = {"width": 512, "height": 512, "frames": 97, "fps": 24, "model": "Ltx2_19B_Dist_FP8"}
    assert _price(api, "aud2video", video) > 0  # the hosted OpenAPI's own aud2video example


def test_rmbg_1_4_is_its_own_model_not_an_alias(api):
    models = {m["slug"]: m for m in api.get("models", params={"filter[inference_types]": "img-rmbg"}).json()["data"]}
    assert {"RMBG-1.4", "Ben2"} <= set(models)
    assert "non-commercial" in models["RMBG-1.4"]["license"]
    assert "RMBG-1.4" not in models["Ben2"]["aliases"]


@pytest.mark.parametrize(
    ("model", "lang"),
    [
        ("Qwen3_TTS", "en-us"),
        ("Qwen3_TTS", "EN"),
        ("Qwen3_TTS", "English"),
        ("Chatterbox", "en-us"),
        ("Kokoro", "en"),
        ("Kokoro", "EN_GB"),
        ("Piper_en_US_Joe", "en"),
    ],
)
def test_language_codes_are_accepted_by_every_tts_model(api, model, lang):
    body = {"model": model, "text": "Hello there, world.", "lang": lang, "format": "flac", "speed": 1, "sample_rate": 24000}
    assert _price(api, "txt2audio", body) > 0


def test_unknown_language_is_refused_with_the_choices(api):
    body = {"model": "Qwen3_TTS", "text": "Hello there, world.", "lang": "xx-yy", "format": "flac", "speed": 1, "sample_rate": 24000}
    response = api.post("txt2audio/price-calculation", json=body)
    assert response.status_code == 422 and "English" in response.json()["errors"]["lang"][0]


def test_language_code_reaches_the_pipeline_as_the_models_own_slug(api):
    body = RequestBody({"model": "Qwen3_TTS", "text": "Hello there, world.", "lang": "en-US", "voice": "Vivian"})
    checked = validate(TASKS["txt2audio"], body.fields, body.files, api.engine, for_price=True)  # submit: the same checks
    assert checked.params["lang"] == "English"
