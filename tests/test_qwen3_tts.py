"""Qwen3-TTS through the HTTP API: three tiny random-weight checkpoints in the released layout, one per
mode, installed where the catalog entry looks for them (its own folder, and the Base and VoiceDesign
repositories' folders for its components).

Random weights never say end-of-speech, so every job runs to its frame budget: the checks are the
plumbing (modes, voices, languages, reference audio, tempo, seeds, formats, the 24 kHz rate) and the
refusals. The talker's and the codec's numerics were checked against Qwen's own code during
development; here what counts is that the catalog model runs end to end.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tests.speech import finish, reference_wav, serving_models
from tests.speech import speak as speaking
from tests.qwen3_tts_checkpoint import write_tiny_qwen3_tts

TEXT = "Hello there, friend."
BODY = {"text": TEXT, "model": "Qwen3_TTS", "lang": "English", "voice": "Vivian", "format": "wav"}
FOLDERS = {"custom_voice": "Qwen3_TTS", "voice_clone": "Qwen--Qwen3-TTS-12Hz-1.7B-Base",
           "voice_design": "Qwen--Qwen3-TTS-12Hz-1.7B-VoiceDesign"}


@pytest.fixture(scope="session")
def tiny_checkpoints(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("qwen3-tts")
    return {mode: write_tiny_qwen3_tts(root / mode, mode, seed=index) for index, mode in enumerate(FOLDERS)}


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory, tiny_checkpoints: dict[str, Path]):
    with serving_models(tmp_path_factory, {name: tiny_checkpoints[mode] for mode, name in FOLDERS.items()}) as api:
        yield api


def speak(api, **overrides) -> tuple[dict, np.ndarray, int]:
    return speaking(api, BODY, **overrides)


def clone(api, **fields) -> tuple[dict, np.ndarray, int]:
    data = {k: str(v) for k, v in {**BODY, "mode": "voice_clone", **fields}.items() if k != "voice"}
    files = {"ref_audio": ("ref.wav", reference_wav(), "audio/wav")}
    return finish(api, api.post("txt2audio", data=data, files=files))


def frames_of(samples: np.ndarray, rate: int) -> float:
    return len(samples) / (rate / 12.5)  # one 12.5 Hz codec frame is 1,920 samples at 24 kHz


def test_preset_voice_speaks_whole_frames_at_24khz(api):
    _, samples, rate = speak(api)
    assert rate == 24000 and samples.ndim == 1
    assert frames_of(samples, rate) == pytest.approx(round(frames_of(samples, rate)))
    assert 1.0 < len(samples) / rate < 60.0
    assert np.isfinite(samples).all() and np.abs(samples).max() > 0


def test_speed_changes_the_tempo(api):
    _, normal, rate = speak(api, voice="Eric")
    _, fast, _ = speak(api, voice="Eric", speed=2)
    _, slow, _ = speak(api, voice="Eric", speed=0.5)
    assert len(fast) / len(normal) == pytest.approx(0.5, abs=0.05)
    assert len(slow) / len(normal) == pytest.approx(2.0, abs=0.1)


def test_preset_voice_with_an_instruction_and_chinese(api):
    _, samples, rate = speak(api, voice="Dylan", lang="Chinese", text="你好，世界。今天天气很好。", instruct="Speak happily.")
    assert rate == 24000 and len(samples) > 0


def test_voice_design_speaks_from_a_description(api):
    _, samples, rate = speak(api, mode="voice_design", voice=None, instruct="A calm, low voice of an old storyteller.")
    assert rate == 24000 and len(samples) / rate > 1.0


@pytest.mark.parametrize("ref_text", [None, "A short reference transcript."])
def test_voice_clone_from_reference_audio(api, ref_text):
    fields = {"ref_text": ref_text} if ref_text else {}
    status, samples, rate = clone(api, format="flac", **fields)
    assert rate == 24000 and samples.ndim == 1 and len(samples) / rate > 1.0


def test_each_mode_without_its_required_field_is_a_422(api):
    design = api.post("txt2audio", json={**BODY, "mode": "voice_design"})
    assert design.status_code == 422 and "instruct" in str(design.json())
    cloned = api.post("txt2audio", json={**BODY, "mode": "voice_clone"})
    assert cloned.status_code == 422 and "ref_audio" in str(cloned.json())


def test_unknown_voice_and_language_fail_the_job_with_the_choices(api):
    for overrides, expected in (({"voice": "Nobody"}, "Vivian"), ({"lang": "Klingon"}, "english")):
        response = api.post("txt2audio", json={**BODY, **overrides})
        if response.status_code == 422:  # the route knows the catalog's voices and languages
            continue
        status = api.wait(response.json()["data"]["request_id"], timeout=120)
        assert status["status"] == "error" and status["error_code"] == "INVALID_INPUT"
        assert expected.lower() in status["error_message"].lower()


def test_loader_serves_only_the_modes_installed(tiny_checkpoints):
    from model_registry.catalog import builtin_specs
    from model_registry.loaders.qwen3_tts import load

    spec = next(s for s in builtin_specs() if s.slug == "Qwen3_TTS")
    loaded = load(spec, tiny_checkpoints["custom_voice"], "cpu", components={"voice_clone": None, "voice_design": None})
    try:
        assert loaded.extras["modes"] == ["custom_voice"]
        with pytest.raises(ValueError, match="drylocal pull Qwen3_TTS"):
            loaded.handle.synthesize(TEXT, mode="voice_design", instruct="A calm voice.", lang="English")
        samples, rate = loaded.handle.synthesize(TEXT, voice="sohee", lang="auto", seed=1)
        assert rate == 24000 and len(samples) % 1920 == 0
        # Sampling draws from torch's generator: a seed repeats a result, another seed changes it.
        again, _ = loaded.handle.synthesize(TEXT, voice="sohee", lang="auto", seed=1)
        other, _ = loaded.handle.synthesize(TEXT, voice="sohee", lang="auto", seed=2)
        assert np.array_equal(samples, again) and not np.array_equal(samples, other)
    finally:
        loaded.close()
