"""Chatterbox's S3 speech tokenizer: the log-mel front end, token counts on tiny models, and strict loading."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from model_registry.networks.chatterbox.s3tokenizer import (
    CODEBOOK_SIZE,
    SAMPLE_RATE,
    S3Tokenizer,
    load_s3tokenizer,
)

TINY = {"n_mels": 16, "width": 32, "heads": 2, "layers": 2}

# Upstream's S3Tokenizer("speech_tokenizer_v2_25hz") from chatterbox, counted with torch on the meta
# device: 102 parameter tensors plus the persistent _mel_filters and window buffers.
RELEASED_PARAMETERS = 123_714_568
RELEASED_STATE_ENTRIES = 104


def _tiny(seed: int = 0) -> S3Tokenizer:
    torch.manual_seed(seed)
    return S3Tokenizer(**TINY).eval()


def _noise(samples: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (0.3 * rng.standard_normal(samples)).astype(np.float32)


# Upstream's arithmetic: samples // 160 mel frames, then two stride-2 convolutions, ceil(frames / 4).
@pytest.mark.parametrize(
    ("samples", "tokens"),
    [(SAMPLE_RATE, 25), (2 * SAMPLE_RATE, 50), (16_159, 25), (16_160, 26), (16_800, 27), (201, 1)],
)
def test_token_count_follows_the_mel_frame_count(samples, tokens):
    ids, lengths = _tiny().tokenize([_noise(samples)])
    assert ids.shape == (1, tokens)
    assert lengths.tolist() == [tokens]


def test_tokens_are_long_ids_in_the_codebook():
    ids, lengths = _tiny().tokenize([_noise(2 * SAMPLE_RATE)])
    assert ids.dtype == lengths.dtype == torch.long
    assert CODEBOOK_SIZE == 3**8 == 6561
    assert 0 <= int(ids.min()) and int(ids.max()) < CODEBOOK_SIZE


def test_batch_gives_each_clip_its_own_tokens():
    model = _tiny()
    clips = [_noise(SAMPLE_RATE, seed=1), _noise(2 * SAMPLE_RATE, seed=2), _noise(12_345, seed=3)]
    ids, lengths = model.tokenize(clips)
    assert lengths.tolist() == [25, 50, 20]
    assert ids.shape == (3, 50)
    for row, length, clip in zip(ids, lengths.tolist(), clips):
        alone, _ = model.tokenize([clip])
        assert torch.equal(row[:length], alone[0])
        assert (row[length:] == 0).all()


def test_max_len_cuts_mel_frames_but_does_not_pad():
    model = _tiny()
    ids, lengths = model.tokenize([_noise(3 * SAMPLE_RATE), _noise(SAMPLE_RATE)], max_len=30)
    assert ids.shape == (2, 30)
    assert lengths.tolist() == [30, 25]


def test_max_len_must_be_positive():
    with pytest.raises(ValueError, match="max_len"):
        _tiny().tokenize([_noise(SAMPLE_RATE)], max_len=0)


def test_clips_over_30_seconds_are_tokenized_in_overlapping_windows():
    model = _tiny()
    with torch.inference_mode():
        mel = model.log_mel(_noise(31 * SAMPLE_RATE))[None]
        ids, lengths = model(mel, torch.tensor([mel.shape[-1]]))
        first_window, _ = model(mel[..., :3000], torch.tensor([3000]))
    # 3100 frames: windows [0, 3000) and [2600, 3100) of 750 and 125 tokens, each losing 50 to the
    # 100-token overlap, which is split in its middle.
    assert lengths.tolist() == [775]
    assert torch.equal(ids[0, :700], first_window[0, :700])


def test_log_mel_has_100_frames_a_second_floored_8_decades_below_the_peak():
    t = np.arange(SAMPLE_RATE) / SAMPLE_RATE
    tone = (0.5 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    log_mel = _tiny().log_mel(tone)
    assert log_mel.shape == (TINY["n_mels"], 100)
    assert log_mel.dtype == torch.float32
    # log10 clamped 8 below its maximum, then divided by 4.
    assert float(log_mel.max() - log_mel.min()) == pytest.approx(2.0)


def test_log_mel_rejects_clips_too_short_for_the_centred_stft():
    with pytest.raises(ValueError, match="201 samples"):
        _tiny().log_mel(np.zeros(200, dtype=np.float32))


def test_prefixed_state_dict_round_trips():
    model = _tiny()
    state = {f"tokenizer.{k}": v for k, v in model.state_dict().items()}
    state["flow.encoder.weight"] = torch.zeros(2)  # the rest of S3Gen's checkpoint is ignored
    loaded = load_s3tokenizer(state, **TINY)
    assert not loaded.training
    clip = _noise(SAMPLE_RATE, seed=4)
    assert torch.equal(loaded.tokenize([clip])[0], model.tokenize([clip])[0])


def test_front_end_buffers_may_be_absent_and_stay_float32():
    state = {k: v for k, v in _tiny().state_dict().items() if k not in ("_mel_filters", "window")}
    loaded = load_s3tokenizer(state, prefix="", dtype=torch.bfloat16, **TINY)
    assert loaded._mel_filters.dtype == loaded.window.dtype == torch.float32
    assert loaded.encoder.conv1.weight.dtype == torch.bfloat16
    ids, _ = loaded.tokenize([_noise(SAMPLE_RATE)])
    assert ids.shape == (1, 25)


def test_missing_weight_is_named():
    state = {f"tokenizer.{k}": v for k, v in _tiny().state_dict().items()}
    del state["tokenizer.encoder.blocks.1.attn.fsmn_block.weight"]
    with pytest.raises(ValueError, match=r"missing 1: tokenizer\.encoder\.blocks\.1\.attn\.fsmn_block\.weight"):
        load_s3tokenizer(state, **TINY)


def test_unexpected_weight_is_named():
    state = dict(_tiny().state_dict())
    state["encoder.blocks.2.attn.key.bias"] = torch.zeros(32)
    with pytest.raises(ValueError, match=r"unexpected 1: encoder\.blocks\.2\.attn\.key\.bias"):
        load_s3tokenizer(state, prefix="", **TINY)


def test_misshapen_weight_is_named():
    state = dict(_tiny().state_dict())
    state["quantizer._codebook.project_down.weight"] = torch.zeros(6, 32)
    with pytest.raises(ValueError, match=r"misshapen 1: quantizer\._codebook\.project_down\.weight"):
        load_s3tokenizer(state, prefix="", **TINY)


def test_default_geometry_is_the_released_network():
    with torch.device("meta"):
        model = S3Tokenizer()
    assert sum(p.numel() for p in model.parameters()) == RELEASED_PARAMETERS
    state = model.state_dict()
    assert len(state) == RELEASED_STATE_ENTRIES
    # Spot checks against key names and shapes under "tokenizer." in s3gen.safetensors.
    assert state["_mel_filters"].shape == (128, 201)
    assert state["window"].shape == (400,)
    assert state["encoder.conv1.weight"].shape == (1280, 128, 3)
    assert state["encoder.blocks.5.attn.fsmn_block.weight"].shape == (1280, 1, 31)
    assert state["encoder.blocks.5.mlp.0.weight"].shape == (5120, 1280)
    assert "encoder.blocks.0.attn.key.bias" not in state
    assert state["quantizer._codebook.project_down.weight"].shape == (8, 1280)
