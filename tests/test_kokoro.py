"""Kokoro-82M through the HTTP API, on a random-weight checkpoint in the hub's layout (see kokoro_checkpoint).

Random weights speak noise, so the checks are about the plumbing: voices, languages, speed, formats,
the 24 kHz rate, durations in a plausible range, and the 422s and job errors of what Kokoro cannot do.
One server serves the whole module: loading the model is most of the cost.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.speech import serving_models
from tests.speech import speak as speaking
from tests.kokoro_checkpoint import build_tiny_kokoro

pytest.importorskip("kokoro", reason="the kokoro extra is not installed")

SENTENCE = "The quick brown fox jumps over the lazy dog."
BODY = {"text": SENTENCE, "model": "Kokoro", "lang": "en-us", "voice": "af_heart", "format": "wav"}


@pytest.fixture(scope="session")
def tiny_kokoro(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_kokoro(tmp_path_factory.mktemp("kokoro") / "Kokoro-82M")


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory, tiny_kokoro: Path):
    with serving_models(tmp_path_factory, {"Kokoro": tiny_kokoro}) as api:
        yield api


def speak(api, **overrides) -> tuple[dict, object, int]:
    return speaking(api, BODY, **overrides)


@pytest.mark.parametrize("fmt", ["flac", "mp3"])
def test_kokoro_speaks_in_each_format(api, fmt):
    _, samples, rate = speak(api, format=fmt)
    assert rate == 24000
    assert samples.ndim == 1
    assert 0.5 < len(samples) / rate < 15.0


def test_speed_two_is_shorter(api):
    _, normal, rate = speak(api)
    _, fast, fast_rate = speak(api, speed=2)
    assert rate == fast_rate == 24000
    assert len(fast) < 0.75 * len(normal)


@pytest.mark.parametrize("lang, voice", [("en-gb", "bf_emma"), ("es", "ef_dora")])
def test_voices_of_other_languages_speak(api, lang, voice):
    text = SENTENCE if lang == "en-gb" else "El veloz zorro marrón salta sobre el perro perezoso."
    _, samples, rate = speak(api, lang=lang, voice=voice, text=text)
    assert rate == 24000 and 0.5 < len(samples) / rate < 15.0


def test_a_catalog_voice_that_is_not_installed_fails_the_job(api):
    response = api.post("txt2audio", json={**BODY, "voice": "af_sky"})
    assert response.status_code == 200, response.json()
    status = api.wait(response.json()["data"]["request_id"], timeout=120)
    assert status["status"] == "error"
    assert status["error_code"] == "INVALID_INPUT" and "af_sky" in status["error_message"]


@pytest.mark.parametrize(
    "extra, field",
    [
        ({"voice": "bf_emma"}, "voice"),  # a British voice under lang en-us
        ({"mode": "voice_clone"}, "mode"),  # Kokoro has preset voices only
        ({"text": "hi"}, "text"),  # min_text is 3
    ],
)
def test_what_kokoro_cannot_do_is_422(api, extra, field):
    response = api.post("txt2audio", json={**BODY, **extra})
    assert response.status_code == 422
    assert field in response.json()["errors"]


def test_models_lists_kokoro_installed_with_its_languages_and_voices(api):
    response = api.get("models", params={"filter[inference_types]": "txt2audio", "per_page": 100})
    assert response.status_code == 200
    kokoro = next(model for model in response.json()["data"] if model["slug"] == "Kokoro")
    assert kokoro["installed"] is True and kokoro["available"] is True
    languages = {language["slug"]: language for language in kokoro["languages"]}
    assert {"en-us", "en-gb", "es", "fr-fr", "hi", "it", "pt-br"} <= set(languages)
    assert "af_heart" in [voice["slug"] for voice in languages["en-us"]["voices"]]
    assert "bf_emma" in [voice["slug"] for voice in languages["en-gb"]["voices"]]
    assert kokoro["info"]["features"]["supported_modes"] == ["custom_voice"]


def test_long_phoneme_strings_are_cut_at_sentence_ends_first():
    from model_registry.loaders.kokoro import _split

    sentence = "ðə kwˈɪk bɹˈWn fˈɑks ʤˈʌmps ˌOvəɹ ðə lˈAzi dˈɑɡ."
    pieces = _split(" ".join([sentence] * 30), 510)
    assert len(pieces) > 1 and all(len(p) <= 510 for p in pieces)
    assert all(p.endswith(".") for p in pieces)
    assert " ".join(pieces) == " ".join([sentence] * 30)
    # No sentence end in reach: clause marks, then spaces, then a hard cut.
    assert all(len(p) <= 20 for p in _split("a, " * 40 + "b" * 50, 20))
