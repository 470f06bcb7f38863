"""Chatterbox through the HTTP API: a tiny random-weight checkpoint in the release's layout (with its
``drylocal_geometry.json`` and a built-in ``conds.pt`` voice), installed where the catalog looks for it.

Random weights rarely say stop, so a job runs to the text's token budget: the checks are the plumbing
(the default voice, cloning from reference audio, languages, tempo, the 24 kHz rate, whole vocoder hops)
and the refusals. The networks' numerics are checked against upstream in their own test files.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import soundfile

from tests.chatterbox_checkpoint import write_tiny_chatterbox
from tests.speech import finish, reference_wav, serving_models
from tests.speech import speak as speaking

TEXT = "Hello there, friend."
BODY = {"text": TEXT, "model": "Chatterbox", "lang": "en", "voice": "default", "format": "wav", "seed": 3}
HOP = 480  # the vocoder's samples per 50 Hz mel frame at 24 kHz


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_chatterbox(tmp_path_factory.mktemp("chatterbox") / "ResembleAI--chatterbox")


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory, tiny_checkpoint: Path):
    with serving_models(tmp_path_factory, {"Chatterbox": tiny_checkpoint}) as api:
        yield api


def speak(api, **overrides) -> tuple[dict, np.ndarray, int]:
    return speaking(api, BODY, **overrides)


def test_default_voice_speaks_whole_hops_at_24khz(api):
    _, samples, rate = speak(api)
    assert rate == 24000 and samples.ndim == 1
    assert len(samples) % HOP == 0 and len(samples) / rate > 0.5
    assert np.isfinite(samples).all() and np.abs(samples).max() > 0


def test_voice_clone_from_reference_audio(api):
    data = {k: str(v) for k, v in {**BODY, "mode": "voice_clone", "format": "flac"}.items() if k != "voice"}
    files = {"ref_audio": ("ref.wav", reference_wav(), "audio/wav")}
    _, samples, rate = finish(api, api.post("txt2audio", data=data, files=files))
    assert rate == 24000 and samples.ndim == 1 and len(samples) / rate > 0.5


def test_french_is_spoken(api):
    _, samples, rate = speak(api, lang="fr", text="Bonjour, mon ami.")
    assert rate == 24000 and len(samples) % HOP == 0


def test_voice_clone_without_ref_audio_is_a_422(api):
    response = api.post("txt2audio", json={**BODY, "mode": "voice_clone"})
    assert response.status_code == 422 and "ref_audio" in str(response.json())


def test_catalog_keeps_the_speed_at_one(api):
    # The catalog entry's limits hold Chatterbox to speed 1 at the route; the tempo change is below.
    assert api.post("txt2audio", json={**BODY, "speed": 2}).status_code == 422


def test_speed_two_halves_the_length(tiny_checkpoint):
    from engine.tasks.txt2audio import TASK
    from model_registry.catalog import builtin_specs
    from model_registry.loaders.chatterbox import load

    spec = next(s for s in builtin_specs() if s.slug == "Chatterbox")
    loaded = load(spec, tiny_checkpoint, "cpu")
    try:
        assert loaded.handle.native_speed is False
        params = {"text": TEXT, "lang": "en", "voice": "default", "seed": 5, "format": "wav"}
        lengths = []
        for speed in (1, 2):
            result = TASK.pipeline.run(loaded, TASK.typed({**params, "speed": speed}), lambda *a, **k: None)
            lengths.append(len(soundfile.read(io.BytesIO(result.data))[0]))
        assert lengths[1] / lengths[0] == pytest.approx(0.5, abs=0.05)
    finally:
        loaded.close()


def test_unknown_language_and_missing_default_voice_are_refused(tiny_checkpoint, tmp_path):
    from model_registry.catalog import builtin_specs
    from model_registry.loaders.chatterbox import load

    spec = next(s for s in builtin_specs() if s.slug == "Chatterbox")
    bare = tmp_path / "bare"
    bare.mkdir()
    for file in tiny_checkpoint.iterdir():
        if file.name != "conds.pt":
            (bare / file.name).symlink_to(file)
    loaded = load(spec, bare, "cpu")
    try:
        with pytest.raises(ValueError, match="fr, he"):
            loaded.handle.synthesize(TEXT, voice="default", lang="klingon")
        with pytest.raises(ValueError, match="conds.pt"):
            loaded.handle.synthesize(TEXT, voice="default", lang="en")
    finally:
        loaded.close()
