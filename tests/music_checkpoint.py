"""A tiny random-weight ACE-Step v1.5 pipeline (diffusers' AceStepPipeline) saved in the diffusers layout.

The VAE keeps the real model's 1920x downsampling at 48 kHz stereo (25 latents a second), so output
lengths are the real ones; every width is tiny. The tokenizer is a byte-level BPE built in memory.
"""

from __future__ import annotations

from pathlib import Path


def _tokenizer():
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=400, special_tokens=["<|endoftext|>"], initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    bpe.train_from_iterator(["# Instruction\n# Caption\n# Metas\nbpm keyscale timesignature duration seconds [verse] [chorus] piano guitar"], trainer=trainer)
    return PreTrainedTokenizerFast(tokenizer_object=bpe, pad_token="<|endoftext|>", eos_token="<|endoftext|>")


def build_tiny_ace_step(target: Path, seed: int = 0) -> Path:
    if (target / "model_index.json").is_file():
        return target
    import torch
    from diffusers import AceStepPipeline, AutoencoderOobleck, FlowMatchEulerDiscreteScheduler
    from diffusers.models.transformers.ace_step_transformer import AceStepTransformer1DModel
    from diffusers.pipelines.ace_step import AceStepConditionEncoder
    from transformers import Qwen3Config, Qwen3Model

    tokenizer = _tokenizer()
    torch.manual_seed(seed)
    shared = {"num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 8, "rope_theta": 10000.0, "sliding_window": 16}
    transformer = AceStepTransformer1DModel(
        hidden_size=32, intermediate_size=64, num_hidden_layers=2, in_channels=24, audio_acoustic_hidden_dim=8,
        patch_size=2, is_turbo=True, **shared,
    )
    text_encoder = Qwen3Model(
        Qwen3Config(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                    head_dim=8, vocab_size=len(tokenizer), max_position_embeddings=4096)
    )
    condition_encoder = AceStepConditionEncoder(
        hidden_size=32, intermediate_size=64, text_hidden_dim=32, timbre_hidden_dim=8,
        num_lyric_encoder_hidden_layers=2, num_timbre_encoder_hidden_layers=2, **shared,
    )
    vae = AutoencoderOobleck(
        # The encoder emits mean and scale: twice the 8 latent channels the decoder and the DiT take.
        encoder_hidden_size=16, downsampling_ratios=[2, 4, 4, 6, 10], decoder_channels=8, decoder_input_channels=8,
        audio_channels=2, channel_multiples=[1, 1, 1, 1, 1], sampling_rate=48000,
    )
    scheduler = FlowMatchEulerDiscreteScheduler(num_train_timesteps=1, shift=1.0)
    pipe = AceStepPipeline(
        vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, transformer=transformer,
        condition_encoder=condition_encoder, scheduler=scheduler,
    )
    pipe.save_pretrained(target)
    return target
