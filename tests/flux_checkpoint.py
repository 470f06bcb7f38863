"""A tiny random-weight FLUX.1 pipeline and a LoRA for it, built with the real diffusers classes."""

from __future__ import annotations

import string
from pathlib import Path

__all__ = ("build_tiny_flux", "build_tiny_flux_lora")

_WORDS = "a an the cat dog red blue green sky sea on in of make it combine".split()


def _clip_tokenizer():
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import CLIPTokenizerFast

    vocab = {"<pad>": 0, "<unk>": 1, "<|startoftext|>": 2, "<|endoftext|>": 3}
    for token in _WORDS + list(string.ascii_lowercase):
        vocab.setdefault(token, len(vocab))
    backend = Tokenizer(models.BPE(vocab, [], unk_token="<unk>", end_of_word_suffix="</w>"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    return CLIPTokenizerFast(tokenizer_object=backend, bos_token="<|startoftext|>", eos_token="<|endoftext|>",
                             unk_token="<unk>", pad_token="<pad>", model_max_length=77)


def _t5_tokenizer():
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import T5TokenizerFast

    pieces = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0)]
    pieces += [(f"\u2581{w}", -1.0) for w in _WORDS] + [(c, -2.0) for c in string.ascii_lowercase]
    backend = Tokenizer(models.Unigram(pieces, unk_id=2))
    backend.pre_tokenizer = pre_tokenizers.Metaspace()
    return T5TokenizerFast(tokenizer_object=backend, eos_token="</s>", unk_token="<unk>", pad_token="<pad>",
                           extra_ids=0, model_max_length=512)


def build_tiny_flux(target: Path, seed: int = 0) -> Path:
    """FluxPipeline: one double and one single transformer block, a one-block VAE, tiny CLIP and T5."""
    import torch
    from diffusers import AutoencoderKL, FlowMatchEulerDiscreteScheduler, FluxPipeline, FluxTransformer2DModel
    from transformers import CLIPTextConfig, CLIPTextModel, T5Config, T5EncoderModel

    torch.manual_seed(seed)
    transformer = FluxTransformer2DModel(
        patch_size=1, in_channels=4, num_layers=1, num_single_layers=1, attention_head_dim=16,
        num_attention_heads=2, joint_attention_dim=32, pooled_projection_dim=32, axes_dims_rope=[4, 4, 8],
    )
    vae = AutoencoderKL(
        sample_size=32, in_channels=3, out_channels=3, block_out_channels=(4,), layers_per_block=1,
        latent_channels=1, norm_num_groups=1, use_quant_conv=False, use_post_quant_conv=False,
        shift_factor=0.0609, scaling_factor=1.5035,
        down_block_types=("DownEncoderBlock2D",), up_block_types=("UpDecoderBlock2D",),
    )
    clip = CLIPTextModel(CLIPTextConfig(
        bos_token_id=2, eos_token_id=3, pad_token_id=0, hidden_size=32, intermediate_size=37,
        num_attention_heads=4, num_hidden_layers=2, vocab_size=64, projection_dim=32, hidden_act="gelu",
    ))
    t5 = T5EncoderModel(T5Config(vocab_size=64, d_model=32, d_kv=8, d_ff=37, num_layers=2, num_heads=4))
    pipe = FluxPipeline(
        scheduler=FlowMatchEulerDiscreteScheduler(), vae=vae, text_encoder=clip, tokenizer=_clip_tokenizer(),
        text_encoder_2=t5, tokenizer_2=_t5_tokenizer(), transformer=transformer,
    )
    pipe.save_pretrained(target)
    return target


def build_tiny_flux_lora(pipeline_path: Path, target_file: Path, rank: int = 4, seed: int = 1) -> Path:
    """A LoRA on the tiny FLUX transformer's attention, with non-zero up-projections so it changes output."""
    import torch
    from diffusers import FluxPipeline, FluxTransformer2DModel
    from peft import LoraConfig, get_peft_model_state_dict

    torch.manual_seed(seed)
    transformer = FluxTransformer2DModel.from_pretrained(pipeline_path, subfolder="transformer")
    transformer.add_adapter(LoraConfig(r=rank, lora_alpha=rank, init_lora_weights=False,
                                       target_modules=["to_q", "to_k", "to_v", "to_out.0"]))
    target_file.parent.mkdir(parents=True, exist_ok=True)
    FluxPipeline.save_lora_weights(
        str(target_file.parent), transformer_lora_layers=get_peft_model_state_dict(transformer),
        weight_name=target_file.name,
    )
    return target_file
