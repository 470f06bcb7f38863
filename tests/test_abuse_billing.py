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

