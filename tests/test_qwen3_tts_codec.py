"""The Qwen3-TTS 12 Hz speech codec on a tiny random checkpoint in the released layout.

Its numerics were compared with Qwen's own ``Qwen3TTSTokenizerV2Model`` during development (same
decoded samples to float32 rounding, identical codes); these tests pin the behaviour around them:
lengths, padding, chunking, the encoder's frame count and loading.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from model_registry.networks.qwen3_tts.codec import SpeechCodec
from tests.qwen3_tts_checkpoint import write_tiny_speech_tokenizer

FRAME = 1920  # samples per 12.5 Hz frame at 24 kHz
QUANTIZERS = 16


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("speech-tokenizer")
    write_tiny_speech_tokenizer(path)
    return path


@pytest.fixture(scope="module")
def codec(folder: Path) -> SpeechCodec:
    return SpeechCodec.from_pretrained(folder)


def random_codes(frames: int, batch: int = 1, seed: int = 0) -> torch.Tensor:
    return torch.randint(0, 2048, (batch, frames, QUANTIZERS), generator=torch.Generator().manual_seed(seed))


def test_tiny_checkpoint_loads_in_eval_mode_at_24khz(codec: SpeechCodec):
    assert not codec.training
    assert (codec.input_sample_rate, codec.output_sample_rate) == (24000, 24000)


def test_each_frame_decodes_to_1920_samples(codec: SpeechCodec):
    (wave,) = codec.decode(random_codes(5))
    assert wave.shape == (5 * FRAME,)
    assert wave.dtype == torch.float32
    assert wave.abs().max() <= 1.0 and wave.std() > 0


def test_minus_one_padding_ends_a_row_without_changing_its_audio(codec: SpeechCodec):
    codes = random_codes(6, batch=2)
    codes[1, 4:] = -1
    full, padded = codec.decode(codes)
    (alone,) = codec.decode(codes[1:, :4])
    assert full.shape == (6 * FRAME,) and padded.shape == (4 * FRAME,)
    # The decoder is causal, so what follows a row's end (decoded as code 0, then cut) changes nothing.
    torch.testing.assert_close(padded, alone, rtol=0, atol=1e-5)


def test_chunked_decoding_matches_one_pass_when_the_context_covers_the_receptive_field(codec: SpeechCodec):
    # Upstream decodes 300 frames at a time, each chunk preceded by up to 25 frames of context whose
    # audio is dropped. Smaller chunks take the same path in a fraction of the time: here chunks start
    # at frames 0, 16 (16 frames of context) and 32 (25). The tiny decoder sees about 15 frames back,
    # so chunk edges must not show (without the context they would: each chunk would start from
    # silence); the released one sees ~580 frames back through its attention, and there the edges
    # differ slightly, as upstream's do.
    codes = random_codes(40, seed=1)
    (chunked,) = codec.decode(codes, chunk_size=16)
    (one_pass,) = codec.decode(codes, chunk_size=40)
    assert chunked.shape == (40 * FRAME,)
    torch.testing.assert_close(chunked, one_pass, rtol=0, atol=1e-4)


def test_one_second_tone_encodes_to_13_frames_of_16_codes(codec: SpeechCodec):
    t = np.arange(24000) / 24000
    tone = (0.5 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    codes = codec.encode(tone)
    # Upstream keeps one frame per started 1,920 samples: 24,000 / 1,920 = 12.5 -> 13.
    assert codes.shape == (13, QUANTIZERS) and codes.dtype == torch.long
    assert 0 <= int(codes.min()) and int(codes.max()) < 2048
    assert torch.equal(codec.encode(torch.from_numpy(tone)), codes)


def test_a_checkpoint_missing_a_weight_is_refused_by_name(folder: Path, tmp_path: Path):
    broken = tmp_path / "broken"
    shutil.copytree(folder, broken)
    weights = load_file(str(broken / "model.safetensors"))
    del weights["decoder.pre_transformer.norm.weight"]
    save_file(weights, str(broken / "model.safetensors"))
    with pytest.raises(ValueError, match=r"missing \['decoder\.pre_transformer\.norm\.weight'\]"):
        SpeechCodec.from_pretrained(broken)


def test_a_25hz_tokenizer_config_is_refused():
    with pytest.raises(ValueError, match="qwen3_tts_tokenizer_25hz"):
        SpeechCodec({"model_type": "qwen3_tts_tokenizer_25hz"})
