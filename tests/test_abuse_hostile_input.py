"""Hostile numbers and text get a 422 in the envelope, never a 500.

Once, deeply nested JSON and lone surrogates (``"\\ud800"``, valid JSON, not valid Unicode) answered
500; non-finite and oversized numbers priced as null or crashed (see also test_abuse_billing.py).
"""

from __future__ import annotations

import pytest

JSON = {"Content-Type": "application/json"}


def _post(api, path: str, raw: str):
    return api.client.post(path, content=raw, headers={**api.headers, **JSON})


@pytest.mark.parametrize(
    "raw",
    [
        "[" * 100_000 + "]" * 100_000,
        '{"input":' + "[" * 5_000 + '"a"' + "]" * 5_000 + ',"model":"MiniLM_L6_v2"}',
        '{"input":"a","model":"MiniLM_L6_v2","extra":' + '{"a":' * 40 + "1" + "}" * 40 + "}",
    ],
)
def test_deeply_nested_json_is_422(api, raw):
    response = _post(api, "/api/v1/client/txt2embedding", raw)
    assert response.status_code == 422 and "nested" in response.json()["message"]


@pytest.mark.parametrize(
    ("path", "raw", "field"),
    [
        ("/api/v1/client/txt2embedding", '{"input":"\\ud800","model":"MiniLM_L6_v2"}', "input"),
        ("/api/v1/client/txt2embedding", '{"input":["ok","\\udfff x"],"model":"MiniLM_L6_v2"}', "input"),
        ("/api/v1/client/txt2audio/price-calculation", '{"text":"\\ud800 hello there","model":"Kokoro","lang":"en-us"}', "text"),
        ("/api/v1/client/txt2img", '{"prompt":"a","model":"\\ud83d","width":512,"height":512,"seed":1}', "model"),
    ],
)
def test_lone_surrogates_are_422_on_their_field(api, path, raw, field):
    response = _post(api, path, raw)
    assert response.status_code == 422 and field in response.json()["errors"]


def test_lone_surrogates_on_the_openai_routes_are_422(api):
    response = _post(api, "/v1/embeddings", '{"input":"\\ud800","model":"MiniLM_L6_v2"}')
    assert response.status_code == 422 and response.json()["error"]["param"] == "input"


def test_a_real_astral_character_is_still_text(api):
    response = _post(api, "/api/v1/client/txt2embedding", '{"input":"cat \\ud83d\\ude00","model":"MiniLM_L6_v2"}')
    assert response.status_code == 200


@pytest.mark.parametrize(
    "raw",
    [
        '{"model":"Flux1schnell","width":512,"height":512,"steps":4,"prompt":"a","seed":10000000000000000000000000000000000000000}',
        '{"model":"Flux1schnell","width":"1e400","height":512,"steps":4,"prompt":"a"}',
        '{"model":"Flux1schnell","width":512,"height":512,"steps":4,"prompt":"a","guidance":NaN}',
    ],
)
def test_oversized_and_non_finite_numbers_are_422(api, raw):
    assert _post(api, "/api/v1/client/txt2img/price-calculation", raw).status_code == 422


def test_non_finite_speed_on_the_openai_speech_route_is_422(api):
    response = _post(api, "/v1/audio/speech", '{"input":"hello","voice":"joe","model":"tts-1","speed":NaN}')
    assert response.status_code == 422 and response.json()["error"]["param"] == "speed"
