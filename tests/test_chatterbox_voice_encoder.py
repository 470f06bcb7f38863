"""Chatterbox's voice encoder: the librosa-equivalent front end, partial windows, tiny models end to end,
and strict loading."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from model_registry.networks.chatterbox.voice_encoder import (
    SAMPLE_RATE,
    VoiceEncoder,
    load_voice_encoder,
    mel_spectrogram,
    partial_windows,
    trim_silence,
)
from model_registry.networks.mel import hz_to_mel, mel_to_hz

TINY = {"num_mels": 8, "hidden_size": 16, "embed_size": 12, "num_layers": 2, "partial_frames": 80}

# Upstream's VoiceEncoder() counted with torch: a 3-layer LSTM 40 -> 256, a 256 -> 256 projection and
# the two GE2E similarity scalars, in 16 state-dict entries.
RELEASED_PARAMETERS = 1_423_618
RELEASED_KEYS = {
    "similarity_weight",
    "similarity_bias",
    *(f"lstm.{kind}_l{layer}" for layer in range(3) for kind in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")),
    "proj.weight",
    "proj.bias",
}


def _tiny(seed: int = 0) -> VoiceEncoder:
    torch.manual_seed(seed)
    return VoiceEncoder(**TINY).eval()


def _noise(seconds: float, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (0.3 * rng.standard_normal(int(seconds * SAMPLE_RATE))).astype(np.float32)


def _tone(hz: float, seconds: float) -> np.ndarray:
    t = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    return (0.5 * np.sin(2 * np.pi * hz * t)).astype(np.float32)


@pytest.mark.parametrize("samples", [1, 159, 160, 16_000, 16_161])
def test_mel_has_one_centred_frame_per_hop(samples):
    assert mel_spectrogram(_noise(1.1)[:samples]).shape == (1 + samples // 160, 40)


def test_mel_of_1khz_tone_peaks_in_its_slaney_bin():
    # 40 Slaney mels from 0 to 8 kHz: the filter centred nearest 1 kHz is number 13 (1031 Hz; 12 is 956).
    centres = mel_to_hz(np.linspace(hz_to_mel(0.0), hz_to_mel(8000.0), 42))[1:-1]
    expected = int(np.argmin(np.abs(centres - 1000.0)))
    assert expected == 13
    mel = mel_spectrogram(_tone(1000.0, 1.0))
    assert (mel[2:-2].argmax(axis=1) == expected).all()  # edge frames see reflected audio


def test_mel_is_power_not_log():
    # Upstream's mel_type "amp" with mel_power 2: doubling the amplitude quadruples every value.
    wave = _noise(0.5)
    np.testing.assert_allclose(mel_spectrogram(2 * wave), 4 * mel_spectrogram(wave), rtol=1e-5)


def test_trim_keeps_the_loud_span_on_512_sample_frames():
    silence = np.zeros(SAMPLE_RATE, dtype=np.float32)
    wave = np.concatenate([silence, _tone(440.0, 1.0), silence])
    trimmed = trim_silence(wave)
    # Frame f spans samples 512 f - 1024 to 512 f + 1024 and the kept span runs from 512 f of the first
    # loud frame to 512 (g + 1) of the last: up to 1024 samples early and 1536 late.
    offset = next(i for i in range(0, len(wave), 512) if np.array_equal(wave[i : i + len(trimmed)], trimmed))
    assert SAMPLE_RATE - 1024 <= offset <= SAMPLE_RATE
    assert 2 * SAMPLE_RATE <= offset + len(trimmed) <= 2 * SAMPLE_RATE + 1536
    assert len(trimmed) % 512 == 0


def test_trim_keeps_an_all_silent_clip_whole():
    # Every frame sits at the same -100 dB floor, 0 dB below the loudest, as librosa decides.
    assert len(trim_silence(np.zeros(5000, dtype=np.float32))) == 5000


@pytest.mark.parametrize(
    ("frames", "expected"),
    [
        (1, (1, 160)),  # shorter than a window: one, zero-padded
        (160, (1, 160)),
        (204, (1, 160)),  # 44 frames past the first step fill 127/160 = 79 % of a window: cut
        (205, (2, 237)),  # 45 fill 80 %: one more window, padded
        (301, (3, 314)),  # 3 s
    ],
)
def test_partial_windows_follow_upstreams_coverage_rule(frames, expected):
    assert partial_windows(frames, 160) == expected


def test_embedding_is_a_unit_vector():
    embedding = _tiny().embed(_noise(3.0))
    assert embedding.shape == (TINY["embed_size"],)
    assert embedding.dtype == torch.float32
    assert torch.linalg.norm(embedding).item() == pytest.approx(1.0, abs=1e-6)


def test_different_audio_gives_different_embeddings():
    model = _tiny()
    first, second = model.embed(_tone(220.0, 2.0)), model.embed(_noise(2.0))
    assert torch.dot(first, second).item() < 0.999


def test_short_clip_is_one_zero_padded_partial():
    model = _tiny()
    wave = _noise(0.3)
    mel = mel_spectrogram(trim_silence(wave), TINY["num_mels"])
    assert mel.shape[0] < TINY["partial_frames"]
    padded = np.zeros((TINY["partial_frames"], TINY["num_mels"]), dtype=np.float32)
    padded[: mel.shape[0]] = mel
    with torch.no_grad():
        expected = model(torch.from_numpy(padded)[None])[0]
    torch.testing.assert_close(model.embed(wave), expected)


def test_embed_accepts_float64_and_a_channel_axis():
    model = _tiny()
    wave = _noise(1.0)
    torch.testing.assert_close(model.embed(wave[None].astype(np.float64)), model.embed(wave))


def test_embed_refuses_an_empty_clip():
    with pytest.raises(ValueError, match="empty"):
        _tiny().embed(np.zeros(0, dtype=np.float32))


def test_partials_must_be_at_least_one_step_long():
    with pytest.raises(ValueError, match="77"):
        VoiceEncoder(partial_frames=76)


def test_released_geometry_has_upstreams_keys_and_size():
    with torch.device("meta"):
        model = VoiceEncoder()
    assert set(model.state_dict()) == RELEASED_KEYS
    assert sum(p.numel() for p in model.parameters()) == RELEASED_PARAMETERS


def test_state_dict_round_trips():
    model = _tiny()
    loaded = load_voice_encoder(model.state_dict(), **TINY)
    assert not loaded.training
    wave = _noise(2.0, seed=3)
    torch.testing.assert_close(loaded.embed(wave), model.embed(wave))


def test_prefixed_state_dict_loads_and_ignores_other_prefixes():
    state = {f"ve.{k}": v for k, v in _tiny().state_dict().items()}
    state["t3.other"] = torch.zeros(1)
    assert isinstance(load_voice_encoder(state, prefix="ve.", **TINY), VoiceEncoder)


def test_loading_names_missing_and_unexpected_keys():
    state = dict(_tiny().state_dict())
    del state["proj.bias"]
    state["extra.weight"] = torch.zeros(1)
    with pytest.raises(ValueError, match=r"missing 1: proj\.bias.*unexpected 1: extra\.weight"):
        load_voice_encoder(state, **TINY)


def test_loading_another_geometry_names_the_misshapen_weights():
    geometry = {**TINY, "num_mels": 10}
    with pytest.raises(ValueError, match=r"wrong shape 1: lstm\.weight_ih_l0 \(64, 8\) \(expected \(64, 10\)\)"):
        load_voice_encoder(_tiny().state_dict(), **geometry)


def test_loading_casts_to_the_requested_dtype():
    model = load_voice_encoder(_tiny().state_dict(), dtype=torch.float64, **TINY)
    assert model.proj.weight.dtype == torch.float64
    assert model.embed(_noise(1.0)).dtype == torch.float64
    assert math.isfinite(model.embed(_noise(1.0)).sum().item())
