"""A random-weight Qwen3-TTS 12 Hz speech codec in the released ``speech_tokenizer/`` layout:
config.json, model.safetensors and preprocessor_config.json.

The structure is the released one (32 Mimi quantizers of which 16 are kept, one semantic and fifteen
acoustic in the decoder, 2,048-entry codebooks so any talker code decodes, Mimi's 8/6/5/4 and the
decoder's 2/2 and 8/5/4/3 rates, so a frame is 1,920 samples at 24 kHz); widths and layer counts are
shrunk. The decoder's single attention layer looks 4 frames back, so its whole receptive field (about
15 frames) fits in the 25 frames of context chunked decoding gives each chunk.

Weights are drawn to roughly keep each layer's output scale (default initialization shrinks the signal
layer after layer into denormal floats, which are slow on CPUs and silence the output), with the layer
scales, SnakeBeta parameters and codebooks varied so that every part changes the audio.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file
from torch import nn

from model_registry.networks.qwen3_tts.codec import MODEL_TYPE, SpeechCodec

__all__ = ("full_size_speech_tokenizer_config", "tiny_speech_tokenizer_config", "write_tiny_speech_tokenizer")

# Mimi's EncodecFeatureExtractor settings, as the released speech_tokenizer/preprocessor_config.json.
PREPROCESSOR_CONFIG: dict[str, Any] = {
    "chunk_length_s": None, "feature_extractor_type": "EncodecFeatureExtractor", "feature_size": 1,
    "overlap": None, "padding_side": "right", "padding_value": 0.0, "return_attention_mask": True,
    "sampling_rate": 24000,
}

_TOP: dict[str, Any] = {
    "architectures": ["Qwen3TTSTokenizerV2Model"], "model_type": MODEL_TYPE, "encoder_valid_num_quantizers": 16,
    "input_sample_rate": 24000, "output_sample_rate": 24000, "decode_upsample_rate": 1920,
    "encode_downsample_rate": 1920,
}


def full_size_speech_tokenizer_config() -> dict[str, Any]:
    """The released codec's config.json (170,557,441 weights): Mimi's default encoder, and the decoder
    geometry every released checkpoint ships."""
    encoder = {
        "model_type": "mimi", "_frame_rate": 12.5, "sampling_rate": 24000, "audio_channels": 1, "hidden_size": 512,
        "num_filters": 64, "num_residual_layers": 1, "upsampling_ratios": [8, 6, 5, 4], "kernel_size": 7,
        "last_kernel_size": 3, "residual_kernel_size": 3, "dilation_growth_rate": 2, "use_causal_conv": True,
        "pad_mode": "constant", "compress": 2, "trim_right_ratio": 1.0, "codebook_size": 2048, "codebook_dim": 256,
        "num_quantizers": 32, "use_conv_shortcut": False, "vector_quantization_hidden_dimension": 256,
        "num_semantic_quantizers": 1, "upsample_groups": 512, "num_hidden_layers": 8, "intermediate_size": 2048,
        "num_attention_heads": 8, "num_key_value_heads": 8, "head_dim": 64, "hidden_act": "gelu",
        "max_position_embeddings": 8000, "norm_eps": 1e-5, "rope_theta": 10000.0, "sliding_window": 250,
        "attention_dropout": 0.0, "layer_scale_initial_scale": 0.01, "attention_bias": False,
    }
    decoder = {
        "attention_bias": False, "attention_dropout": 0.0, "latent_dim": 1024, "codebook_dim": 512,
        "codebook_size": 2048, "decoder_dim": 1536, "hidden_act": "silu", "hidden_size": 512,
        "intermediate_size": 1024, "layer_scale_initial_scale": 0.01, "max_position_embeddings": 8000,
        "head_dim": 64, "num_attention_heads": 16, "num_hidden_layers": 8, "num_key_value_heads": 16,
        "num_quantizers": 16, "rms_norm_eps": 1e-5, "rope_theta": 10000, "sliding_window": 72,
        "upsample_rates": [8, 5, 4, 3], "upsampling_ratios": [2, 2],
    }
    return {**_TOP, "encoder_config": encoder, "decoder_config": decoder}


def tiny_speech_tokenizer_config() -> dict[str, Any]:
    config = full_size_speech_tokenizer_config()
    config["encoder_config"].update(
        hidden_size=16, num_filters=2, num_hidden_layers=1, intermediate_size=32, num_attention_heads=2,
        num_key_value_heads=2, head_dim=8, codebook_dim=8, vector_quantization_hidden_dimension=8, upsample_groups=16,
    )
    config["decoder_config"].update(
        latent_dim=16, codebook_dim=16, decoder_dim=16, hidden_size=16, intermediate_size=32, head_dim=8,
        num_attention_heads=2, num_key_value_heads=1, num_hidden_layers=1, sliding_window=4,
    )
    return config


def _draw_weights(model: nn.Module, generator: torch.Generator) -> None:
    with torch.no_grad():
        for name, tensor in list(model.named_parameters()) + list(model.named_buffers()):
            if not tensor.is_floating_point() or name.endswith("initialized"):
                continue
            noise = torch.randn(tensor.shape, generator=generator)
            leaf = name.rsplit(".", 1)[-1]
            if leaf == "cluster_usage":
                tensor.copy_(torch.rand(tensor.shape, generator=generator) * 1.5 + 0.5)
            elif leaf in ("embedding_sum", "embed_sum"):
                tensor.copy_(noise)
            elif leaf == "scale":
                tensor.copy_(0.1 + 0.1 * noise.abs())
            elif leaf == "gamma":
                tensor.copy_(0.2 * noise)
            elif leaf in ("alpha", "beta"):
                tensor.copy_(0.3 * noise)
            elif "norm" in name and leaf == "weight":
                tensor.copy_(1 + 0.1 * noise)
            elif tensor.ndim >= 2:
                owner = model.get_submodule(name.rsplit(".", 1)[0])
                fan_in = tensor.shape[0] * 2 if isinstance(owner, nn.ConvTranspose1d) else tensor[0].numel()
                tensor.copy_(noise * 0.72 / fan_in**0.5)
            else:
                tensor.copy_(0.02 * noise)


def write_tiny_speech_tokenizer(folder: Path, seed: int = 0) -> None:
    """Write a tiny random codec into ``folder`` (created if needed); the global RNG is left as it was."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    config = tiny_speech_tokenizer_config()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        codec = SpeechCodec(config)
    _draw_weights(codec, torch.Generator().manual_seed(seed))
    save_file({k: v.contiguous() for k, v in codec.state_dict().items()}, str(folder / "model.safetensors"))
    (folder / "config.json").write_text(json.dumps(config, indent=2))
    (folder / "preprocessor_config.json").write_text(json.dumps(PREPROCESSOR_CONFIG, indent=2))


# The talker side: a tiny checkpoint in the released layout, one per mode (``tts_model_type``).
TEXT_SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|tts_pad|>", "<|tts_bos|>", "<|tts_eos|>"]
CORPUS = [
    "<|im_start|>assistant\nThe quick brown fox jumps over the lazy dog.<|im_end|>\n<|im_start|>assistant\n",
    "<|im_start|>user\nA warm, calm voice of an old storyteller.<|im_end|>\n",
    "Hello there, this is a short sentence to speak. Hola, ¿qué tal? 你好，世界。",
]
SPEAKERS = {"vivian": 3065, "serena": 3066, "uncle_fu": 3010, "dylan": 3011, "eric": 3012, "ryan": 3013,
            "aiden": 3014, "ono_anna": 3015, "sohee": 3016}
LANGUAGES = {"english": 2050, "chinese": 2055, "german": 2053, "spanish": 2054, "beijing_dialect": 2074}
MODEL_TYPES = {"custom_voice": "custom_voice", "voice_design": "voice_design", "voice_clone": "base"}


def tiny_qwen3_tts_config(model_type: str, text_ids: dict[str, int], text_vocab: int) -> dict:
    """config.json of a tiny checkpoint: the released structure (16 code groups, the control ids, the
    speaker and language tables) at toy widths."""
    return {
        "architectures": ["Qwen3TTSForConditionalGeneration"],
        "model_type": "qwen3_tts",
        "tokenizer_type": "qwen3_tts_tokenizer_12hz",
        "tts_model_size": "1b7",
        "tts_model_type": model_type,
        "im_start_token_id": text_ids["<|im_start|>"],
        "im_end_token_id": text_ids["<|im_end|>"],
        "tts_pad_token_id": text_ids["<|tts_pad|>"],
        "tts_bos_token_id": text_ids["<|tts_bos|>"],
        "tts_eos_token_id": text_ids["<|tts_eos|>"],
        "talker_config": {
            "vocab_size": 3072, "hidden_size": 64, "intermediate_size": 96, "num_hidden_layers": 2,
            "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 16, "hidden_act": "silu",
            "rms_norm_eps": 1e-6, "rope_theta": 1000000, "max_position_embeddings": 32768,
            "rope_scaling": {"interleaved": True, "mrope_section": [4, 2, 2], "rope_type": "default", "type": "default"},
            "num_code_groups": 16, "text_hidden_size": 32, "text_vocab_size": text_vocab,
            "codec_eos_token_id": 2150, "codec_think_id": 2154, "codec_nothink_id": 2155, "codec_think_bos_id": 2156,
            "codec_think_eos_id": 2157, "codec_pad_id": 2148, "codec_bos_id": 2149,
            "spk_id": SPEAKERS if model_type == "custom_voice" else {},
            "spk_is_dialect": {name: ("beijing_dialect" if name == "dylan" else False) for name in SPEAKERS}
            if model_type == "custom_voice" else {},
            "codec_language_id": LANGUAGES,
            "code_predictor_config": {
                "vocab_size": 2048, "hidden_size": 48, "intermediate_size": 64, "num_hidden_layers": 2,
                "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 12, "num_code_groups": 16,
                "rope_theta": 1000000, "rms_norm_eps": 1e-6, "hidden_act": "silu",
            },
        },
        "speaker_encoder_config": {
            "mel_dim": 128, "enc_dim": 64, "enc_channels": [32, 32, 32, 32, 96], "enc_kernel_sizes": [5, 3, 3, 3, 1],
            "enc_dilations": [1, 2, 3, 4, 1], "enc_attention_channels": 16, "enc_res2net_scale": 4,
            "enc_se_channels": 16, "sample_rate": 24000,
        },
    }


def write_tiny_qwen3_tts(folder: Path, mode: str = "custom_voice", seed: int = 0) -> Path:
    """A random-weight Qwen3-TTS checkpoint for ``mode`` in the hub's layout, speech tokenizer included."""
    import torch
    from safetensors.torch import save_file

    from model_registry.networks.qwen3_tts.speaker import SpeakerEncoder
    from model_registry.networks.qwen3_tts.talker import Talker
    from tests.qwen_tokenizer import qwen_tokenizer, special_ids

    folder.mkdir(parents=True, exist_ok=True)
    tokenizer = qwen_tokenizer(CORPUS, specials=TEXT_SPECIALS)
    ids = special_ids(tokenizer, TEXT_SPECIALS)
    role = tokenizer("<|im_start|>assistant\n")["input_ids"]
    closing = tokenizer("<|im_end|>\n<|im_start|>assistant\n")["input_ids"]
    assert len(role) == 3 and len(closing) == 5, "the prompt slices need Qwen's token boundaries"
    config = tiny_qwen3_tts_config(MODEL_TYPES[mode], ids, len(tokenizer))
    torch.manual_seed(seed)
    talker = Talker(config["talker_config"])
    weights = {f"talker.{k}": v for k, v in talker.state_dict().items()}
    if mode == "voice_clone":
        speaker = SpeakerEncoder(config["speaker_encoder_config"])
        weights |= {f"speaker_encoder.{k}": v for k, v in speaker.state_dict().items()}
    with torch.no_grad():  # random init leaves norms at one and biases at zero; make every weight matter
        weights = {k: v + 0.02 * torch.randn_like(v) if v.is_floating_point() else v for k, v in weights.items()}
    save_file({k: v.contiguous() for k, v in weights.items()}, str(folder / "model.safetensors"))
    (folder / "config.json").write_text(json.dumps(config, indent=2))
    (folder / "generation_config.json").write_text(json.dumps({
        "do_sample": True, "top_k": 50, "top_p": 1.0, "temperature": 0.9, "repetition_penalty": 1.05,
        "subtalker_dosample": True, "subtalker_top_k": 50, "subtalker_top_p": 1.0, "subtalker_temperature": 0.9,
        "max_new_tokens": 8192,
    }))
    tokenizer.save_pretrained(str(folder))
    write_tiny_speech_tokenizer(folder / "speech_tokenizer", seed=seed)
    return folder
