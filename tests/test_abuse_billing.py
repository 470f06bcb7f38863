"""Billing abuse: a client's own counts never bill (or credit) a real job; hostile numbers are 422s.

Once, a negative ``count_text`` on the txt2audio submit route turned a $0.01 Basic key into $770,000
(also through MCP), ``count_text: 0`` made a job free and ``count_text: 1`` billed 9,500 characters as
one. A submitted job is now billed from the text it was given; ``count_text`` and ``duration_seconds``
are read on ``/price-calculation`` only, where they cost nothing.
"""

from __future__ import annotations

import asyncio
import json

import pytest

from model_registry.pricing import price_of
from tests.conftest import live_server, running_api
from tests.test_mcp import session_call

TEXT = "Hello there, this is a short sentence to speak."
SPEECH = {"model": "Piper_en_US_Joe", "text": TEXT, "lang": "en-us", "voice": "joe", "format": "wav"}


def _text_price(api) -> float:
    return price_of(api.engine.registry.get("Piper_en_US_Joe"), {"text": TEXT, "speed": 1})


@pytest.mark.parametrize("count_text", [-1_000_000_000, -1, 0, 1, 10**30, "NaN"])
def test_submitted_count_text_neither_credits_nor_discounts(settings, count_text):
    with running_api(settings, tier="basic", balance=0.01) as api:
        response = api.post("txt2audio", json={**SPEECH, "count_text": count_text})
        assert response.status_code == 200, response.json()
        assert api.wait(response.json()["data"]["request_id"])["status"] == "done"
        balance = api.get("balance").json()["data"]["balance"]
        assert balance == pytest.approx(0.01 - _text_price(api), abs=1e-9)
        assert _text_price(api) > 0


def test_empty_balance_is_refused_whatever_count_text_says(settings):
    with running_api(settings, tier="basic", balance=0.0) as api:
        response = api.post("txt2audio", json={**SPEECH, "count_text": 0})
        assert response.status_code == 422 and "balance" in response.json()["errors"]


def test_an_upload_refused_for_its_balance_leaves_no_inputs_behind(settings):
    from tests.test_ocr import rendered

    with running_api(settings, tier="basic", balance=0.0) as api:
        response = api.post("img2txt", files={"image": ("scan.png", rendered(["a line"]), "image/png")},
                            data={"model": "PP_OCRv4"})
        assert response.status_code == 422 and "balance" in response.json()["errors"]
        assert not settings.inputs_dir.exists() or not any(settings.inputs_dir.iterdir())


def test_mcp_speech_tool_bills_the_text_not_the_count(settings):
    with live_server(settings) as server:
        key, account = server.new_key("mcp-biller", tier="basic", balance=0.01)

        async def calls(session):
            arguments = {**SPEECH, "count_text": -1_000_000_000, "return_result_in_response": False}
            done = await session.call_tool("text_to_audio", arguments)
            balance = await session.call_tool("get_balance", {})
            return done, json.loads(balance.content[0].text)

        done, balance = asyncio.run(session_call(server.url, key, calls))
        assert not done.is_error, done.content
        price = price_of(server.engine.registry.get("Piper_en_US_Joe"), {"text": TEXT, "speed": 1})
        assert balance["balance"] == pytest.approx(0.01 - price, abs=1e-9)


@pytest.mark.parametrize("count_text", [-5, 0])
def test_price_route_refuses_counts_below_one(api, count_text):
    body = {"model": "Kokoro", "count_text": count_text, "lang": "en-us", "speed": 1, "format": "mp3", "sample_rate": 24000}
    response = api.post("txt2audio/price-calculation", json=body)
    assert response.status_code == 422 and "count_text" in response.json()["errors"]


@pytest.mark.parametrize(
    "raw",
    [
        '{"model": "Kokoro", "count_text": 1000, "lang": "en-us", "speed": NaN, "format": "mp3", "sample_rate": 24000}',
        '{"model": "Kokoro", "count_text": 1000, "lang": "en-us", "speed": 1e400, "format": "mp3", "sample_rate": 24000}',
        '{"model": "Kokoro", "count_text": 1000, "lang": "en-us", "speed": "-Infinity", "format": "mp3", "sample_rate": 24000}',
        '{"model": "Kokoro", "count_text": 100000000000000000000000000000, "lang": "en-us", "speed": 1, "format": "mp3", "sample_rate": 24000}',
    ],
)
def test_non_finite_and_oversized_numbers_are_422_not_a_null_price(api, raw):
    response = api.client.post(
        "/api/v1/client/txt2audio/price-calculation",
        content=raw,
        headers={**api.headers, "Content-Type": "application/json"},
    )
    assert response.status_code == 422, response.text
    assert set(response.json()["errors"]) & {"speed", "count_text"}



# ---------------------------------------------------------------- charges settled from what the job really was
def _ledger_total(api, account_id: str) -> float:
    return api.engine.accounts.balance(account_id)


def test_ocr_is_settled_to_the_characters_it_read(settings):
    from tests.test_ocr import rendered

    with running_api(settings, tier="premium", balance=1.0) as api:
        spec = api.engine.registry.get("PP_OCRv4")
        for lines in ([], ["Hello world, reading this page", "and a second line of words"]):
            before = api.get("balance").json()["data"]["balance"]
            image = rendered(lines) if lines else rendered([""])
            response = api.post("img2txt", files={"image": ("scan.png", image, "image/png")}, data={"model": "PP_OCRv4"})
            request_id = response.json()["data"]["request_id"]
            status = api.wait(request_id, timeout=120)
            assert status["status"] == "done", status
            job = api.engine.jobs.get(request_id)
            read = job.meta["characters"]
            assert (read == 0) == (not lines)
            expected = price_of(spec, {**job.params, "characters": read})
            after = api.get("balance").json()["data"]["balance"]
            assert after == pytest.approx(before - expected, abs=1e-9)  # not the 1,000-character quote
            assert job.price == expected


def test_transcription_is_settled_to_the_decoded_duration_not_the_header(settings, monkeypatch, tmp_path_factory):
    """A header that understates the length (simulated: the header reader says 1 s) bills what decodes."""
    import engine.tasks._checks
    from model_registry.embedded import provision_embedded
    from tests.media_files import piper_speech, wav_bytes

    root = tmp_path_factory.mktemp("whisper")
    provision_embedded(root, only=("WhisperBase",))
    settings.models_dir.mkdir(parents=True, exist_ok=True)
    (settings.models_dir / "WhisperBase").symlink_to(root / "WhisperBase")
    monkeypatch.setattr(engine.tasks._checks, "media_duration", lambda data, name: 1.0)
    samples, rate = piper_speech("This sentence lasts rather longer than the one second its header claims to be.")
    with running_api(settings, tier="premium", balance=1.0) as api:
        spec = api.engine.registry.get("WhisperBase")
        quote = api.post(
            "audiofile2txt/price-calculation",
            files={"audio": ("a.wav", wav_bytes(samples, rate), "audio/wav")},
            data={"include_ts": "false", "model": "WhisperBase"},
        ).json()["data"]["price"]
        response = api.post(
            "audiofile2txt", files={"audio": ("a.wav", wav_bytes(samples, rate), "audio/wav")}, data={"include_ts": "false", "model": "WhisperBase"}
        )
        request_id = response.json()["data"]["request_id"]
        assert api.wait(request_id, timeout=120)["status"] == "done"
        decoded = api.engine.jobs.get(request_id).meta["duration_seconds"]
        assert decoded > 3
        expected = price_of(spec, {"duration_seconds": decoded, "include_ts": False})
        assert expected > quote
        assert api.get("balance").json()["data"]["balance"] == pytest.approx(1.0 - expected, abs=1e-9)


def test_settlement_never_takes_a_balance_below_zero(settings):
    with running_api(settings, tier="premium", balance=0.00001) as api:
        account = api.engine.accounts.authenticate(api.key)
        spec = api.engine.registry.get("MiniLM_L6_v2")
        job = api.engine.jobs.create(account, task="txt2embedding", model=spec.slug, params={}, inputs={}, price=0.000004)
        api.engine.jobs.start(job.id)
        assert api.engine.jobs.complete(job.id, result=None, result_file=None, final_price=5.0)
        assert api.engine.accounts.balance(account.id) == 0.0
