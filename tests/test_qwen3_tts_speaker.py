"""Qwen3-TTS speaker encoder: tiny random-weight encoders embed recordings, the mel front end puts a tone
in its band, checkpoint loading strips the prefix and names what does not fit, and the default config
has upstream's layout. Its numerics were checked against Qwen's own code during development."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from model_registry.networks.mel import hz_to_mel, mel_filters, mel_to_hz
from model_registry.networks.qwen3_tts.speaker import SAMPLE_RATE, SpeakerEncoder, speaker_mels

# Two SE-Res2Net blocks of 16 channels, so the aggregation reads 2 * 16 = 32.
TINY = {
    "enc_dim": 12, "enc_channels": [16, 16, 16, 32], "enc_kernel_sizes": [5, 3, 3, 1],
    "enc_dilations": [1, 2, 3, 1], "enc_attention_channels": 8, "enc_res2net_scale": 4, "enc_se_channels": 8,
}

# Upstream's Qwen3TTSSpeakerEncoder at its config defaults, counted from that reference.
DEFAULT_PARAMETERS = 8_854_336
DEFAULT_STATE_ENTRIES = 76


def _tiny(seed: int = 0) -> SpeakerEncoder:
    torch.manual_seed(seed)
    return SpeakerEncoder(TINY).eval()


def _tone(hz: float, seconds: float) -> np.ndarray:
    t = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    return (0.5 * np.sin(2 * np.pi * hz * t)).astype(np.float32)


def _checkpoint(model: SpeakerEncoder) -> dict[str, torch.Tensor]:
    """The encoder's tensors as a whole Base checkpoint holds them, beside some talker weights."""
    weights = {f"speaker_encoder.{key}": value.clone() for key, value in model.state_dict().items()}
    weights["talker.model.norm.weight"] = torch.ones(4)
    return weights


@pytest.mark.parametrize("seconds", [1.0, 3.0])
def test_embedding_is_one_finite_vector(seconds: float):
    embedding = _tiny().embed(_tone(220, seconds))
    assert embedding.shape == (TINY["enc_dim"],)
    assert torch.isfinite(embedding).all()


def test_different_audio_gives_different_embeddings():
    model = _tiny()
    low, high = model.embed(_tone(220, 1.0)), model.embed(_tone(3000, 1.0))
    assert not torch.allclose(low, high, atol=1e-4)


def test_mel_of_1khz_tone_peaks_in_its_band():
    mels = speaker_mels(_tone(1000, 1.0))
    assert mels.shape == (1, SAMPLE_RATE // 256, 128)
    peak = int(mels[0].mean(dim=0).argmax())
    centres = mel_to_hz(np.linspace(hz_to_mel(0.0), hz_to_mel(12000.0), 130))[1:-1]
    assert abs(centres[peak] - 1000) < 30  # bands are ~26 Hz apart around 1 kHz


def test_mel_filters_stop_at_fmax():
    filters = mel_filters(SAMPLE_RATE, 1024, 128, fmax=6000.0)
    above = np.fft.rfftfreq(1024, 1 / SAMPLE_RATE) > 6000.0
    assert filters[:, above].max() == 0
    assert filters[:, ~above].sum(axis=0).max() > 0


def test_from_state_dict_strips_the_prefix():
    original = _tiny(seed=1)
    loaded = SpeakerEncoder.from_state_dict(TINY, _checkpoint(original)).eval()
    audio = _tone(440, 1.0)
    assert torch.equal(loaded.embed(audio), original.embed(audio))


def test_missing_weight_is_named():
    weights = _checkpoint(_tiny())
    del weights["speaker_encoder.asp.conv.weight"]
    with pytest.raises(ValueError, match=r"missing speaker_encoder\.asp\.conv\.weight"):
        SpeakerEncoder.from_state_dict(TINY, weights)


def test_weights_for_another_config_are_refused():
    with pytest.raises(ValueError, match="wrong shapes"):
        SpeakerEncoder.from_state_dict({**TINY, "enc_dim": 24}, _checkpoint(_tiny()))


def test_too_short_reference_is_refused():
    model = _tiny()
    with pytest.raises(ValueError, match="too short"):
        model.embed(_tone(220, 0.01))


def test_default_config_has_upstream_layout():
    model = SpeakerEncoder({})
    state = model.state_dict()
    assert len(state) == DEFAULT_STATE_ENTRIES
    assert sum(p.numel() for p in model.parameters()) == DEFAULT_PARAMETERS
    assert state["blocks.3.res2net_block.blocks.6.conv.weight"].shape == (64, 64, 3)
    assert state["fc.weight"].shape == (1024, 3072, 1)
