"""Chatterbox's CAM++ speaker encoder: the Kaldi front end, tiny models end to end, and strict loading."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from model_registry.networks.chatterbox.campplus import SAMPLE_RATE, CAMPPlus, kaldi_fbank, load_campplus

TINY = {
    "embedding_size": 24,
    "growth_rate": 8,
    "bn_size": 2,
    "init_channels": 16,
    "m_channels": 4,
    "block_layers": (2, 3, 2),
}

# Upstream's CAMPPlus(memory_efficient=False), as s3gen.py builds it, counted with torch: 571 parameter
# tensors plus 366 batch-norm buffers (122 norms x running mean, running var, step counter).
RELEASED_PARAMETERS = 6_848_544
RELEASED_STATE_ENTRIES = 937


def _tiny(seed: int = 0) -> CAMPPlus:
    torch.manual_seed(seed)
    return CAMPPlus(**TINY).eval()


def _noise(seconds: float, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (0.3 * rng.standard_normal(int(seconds * SAMPLE_RATE))).astype(np.float32)


@pytest.mark.parametrize("seconds", [1.0, 3.0])
def test_tiny_embed_is_a_finite_vector(seconds):
    embedding = _tiny().embed(_noise(seconds))
    assert embedding.shape == (TINY["embedding_size"],)
    assert embedding.dtype == torch.float32
    assert torch.isfinite(embedding).all()


def test_embed_matches_forward_on_mean_normalized_features():
    model = _tiny()
    audio = torch.from_numpy(_noise(1.5))
    features = kaldi_fbank(audio)
    features = features - features.mean(dim=0, keepdim=True)
    with torch.no_grad():
        expected = model(features[None])[0]
    torch.testing.assert_close(model.embed(audio), expected)


@pytest.mark.parametrize("samples", [400, 401, 559, 560, 16_000, 48_123])
def test_fbank_frame_count_snips_edges(samples):
    features = kaldi_fbank(torch.zeros(samples))
    assert features.shape == (1 + (samples - 400) // 160, 80)


def test_fbank_rejects_clips_shorter_than_one_frame():
    with pytest.raises(ValueError, match="400 samples"):
        kaldi_fbank(torch.zeros(399))


def test_fbank_of_1khz_tone_peaks_in_its_mel_bin():
    # Kaldi mels: 1127 ln(1 + hz / 700). From 20 Hz (31.75) to 8 kHz (2840.0) in 81 steps of 34.67,
    # bin i is centred at 31.75 + (i + 1) * 34.67; 1 kHz is mel 1000.0, nearest bin 27 (1002.5).
    low, high = (1127 * math.log(1 + hz / 700) for hz in (20, 8000))
    expected = round((1127 * math.log(1 + 1000 / 700) - low) / ((high - low) / 81)) - 1
    assert expected == 27
    t = torch.arange(SAMPLE_RATE) / SAMPLE_RATE
    features = kaldi_fbank(0.5 * torch.sin(2 * math.pi * 1000 * t))
    assert (features.argmax(dim=1) == expected).all()


def test_prefixed_state_dict_round_trips():
    model = _tiny()
    state = {f"speaker_encoder.{k}": v for k, v in model.state_dict().items()}
    state["flow.encoder.weight"] = torch.zeros(2)  # the rest of S3Gen's checkpoint is ignored
    loaded = load_campplus(state, **TINY)
    assert not loaded.training
    audio = _noise(1.0, seed=3)
    torch.testing.assert_close(loaded.embed(audio), model.embed(audio))


def test_batch_norm_step_counters_may_be_absent():
    model = _tiny()
    state = {k: v for k, v in model.state_dict().items() if not k.endswith("num_batches_tracked")}
    loaded = load_campplus(state, prefix="", **TINY)
    torch.testing.assert_close(loaded.embed(_noise(1.0)), model.embed(_noise(1.0)))


def test_missing_weight_is_named():
    state = {f"speaker_encoder.{k}": v for k, v in _tiny().state_dict().items()}
    del state["speaker_encoder.xvector.block2.tdnnd3.cam_layer.linear_local.weight"]
    with pytest.raises(ValueError, match=r"missing 1: speaker_encoder\.xvector\.block2\.tdnnd3\.cam_layer"):
        load_campplus(state, **TINY)


def test_unexpected_weight_is_named():
    state = dict(_tiny().state_dict())
    state["xvector.block4.tdnnd1.linear1.weight"] = torch.zeros(1)
    with pytest.raises(ValueError, match=r"unexpected 1: xvector\.block4\.tdnnd1\.linear1\.weight"):
        load_campplus(state, prefix="", **TINY)


def test_default_geometry_is_the_released_network():
    with torch.device("meta"):
        model = CAMPPlus()
    assert sum(p.numel() for p in model.parameters()) == RELEASED_PARAMETERS
    state = model.state_dict()
    assert len(state) == RELEASED_STATE_ENTRIES
    # Spot checks against key names and shapes in s3gen.safetensors (minus "speaker_encoder.").
    assert state["head.conv1.weight"].shape == (32, 1, 3, 3)
    assert state["head.layer1.0.shortcut.0.weight"].shape == (32, 32, 1, 1)
    assert state["xvector.tdnn.linear.weight"].shape == (128, 320, 5)
    assert state["xvector.block1.tdnnd1.cam_layer.linear1.weight"].shape == (64, 128, 1)
    assert state["xvector.transit1.linear.weight"].shape == (256, 512, 1)
    assert state["xvector.dense.linear.weight"].shape == (192, 1024, 1)
    assert "xvector.dense.nonlinear.batchnorm.running_var" in state
    assert "xvector.dense.nonlinear.batchnorm.weight" not in state  # affine-free
