"""Tiny random-weight FLUX.2 klein and Z-Image pipelines, saved in the diffusers layout."""

from __future__ import annotations

from pathlib import Path

from tests.qwen_tokenizer import VISION_SPECIALS, qwen_tokenizer
from tests.vlm_checkpoint import tiny_qwen25_vl


def chat_tokenizer():
    """Qwen's ChatML tokens in a tiny in-memory BPE (the real tokenizers live on the hub)."""
    return qwen_tokenizer(["a red cat on a blue sky, cinematic light", "user assistant system"], model_max_length=512)


def build_tiny_flux2_klein(target: Path) -> Path:
    if (target / "model_index.json").is_file():
        return target
    import torch
    from diffusers import AutoencoderKLFlux2, FlowMatchEulerDiscreteScheduler, Flux2KleinPipeline, Flux2Transformer2DModel
    from transformers import Qwen3Config, Qwen3ForCausalLM

    tokenizer = chat_tokenizer()
    torch.manual_seed(0)
    transformer = Flux2Transformer2DModel(
        patch_size=1, in_channels=4, num_layers=1, num_single_layers=1, attention_head_dim=16, num_attention_heads=2,
        # klein stacks the encoder's hidden states of three layers: 3 x 16
        joint_attention_dim=48, timestep_guidance_channels=256, axes_dims_rope=[4, 4, 4, 4], guidance_embeds=False,
    )
    # 28 layers so the pipeline's default text_encoder_out_layers (9, 18, 27) exist; 16 wide, it stays tiny.
    text_encoder = Qwen3ForCausalLM(Qwen3Config(
        hidden_size=16, intermediate_size=16, num_hidden_layers=28, num_attention_heads=2, num_key_value_heads=2,
        head_dim=8, vocab_size=len(tokenizer), max_position_embeddings=512,
    ))
    vae = AutoencoderKLFlux2(
        sample_size=32, in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",),
        up_block_types=("UpDecoderBlock2D",), block_out_channels=(4,), layers_per_block=1, latent_channels=1,
        norm_num_groups=1, use_quant_conv=False, use_post_quant_conv=False,
    )
    pipe = Flux2KleinPipeline(scheduler=FlowMatchEulerDiscreteScheduler(), vae=vae, text_encoder=text_encoder,
                              tokenizer=tokenizer, transformer=transformer)
    pipe.save_pretrained(target)
    return target


def build_tiny_zimage(target: Path) -> Path:
    if (target / "model_index.json").is_file():
        return target
    import torch
    from diffusers import AutoencoderKL, FlowMatchEulerDiscreteScheduler, ZImagePipeline, ZImageTransformer2DModel
    from transformers import Qwen3Config, Qwen3Model

    tokenizer = chat_tokenizer()
    torch.manual_seed(0)
    transformer = ZImageTransformer2DModel(
        all_patch_size=(2,), all_f_patch_size=(1,), in_channels=16, dim=32, n_layers=2, n_refiner_layers=1, n_heads=2,
        n_kv_heads=2, norm_eps=1e-5, qk_norm=True, cap_feat_dim=16, rope_theta=256.0, t_scale=1000.0,
        axes_dims=[8, 4, 4], axes_lens=[256, 32, 32],
    )
    with torch.no_grad():  # created with torch.empty: give them values so saved weights are deterministic
        transformer.x_pad_token.copy_(torch.ones_like(transformer.x_pad_token))
        transformer.cap_pad_token.copy_(torch.ones_like(transformer.cap_pad_token))
    vae = AutoencoderKL(
        in_channels=3, out_channels=3, down_block_types=["DownEncoderBlock2D", "DownEncoderBlock2D"],
        up_block_types=["UpDecoderBlock2D", "UpDecoderBlock2D"], block_out_channels=[32, 64], layers_per_block=1,
        latent_channels=16, norm_num_groups=32, sample_size=32, scaling_factor=0.3611, shift_factor=0.1159,
    )
    text_encoder = Qwen3Model(Qwen3Config(
        hidden_size=16, intermediate_size=16, num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=2,
        head_dim=8, vocab_size=len(tokenizer), max_position_embeddings=512,
    ))
    pipe = ZImagePipeline(scheduler=FlowMatchEulerDiscreteScheduler(), vae=vae, text_encoder=text_encoder,
                          tokenizer=tokenizer, transformer=transformer)
    pipe.save_pretrained(target)
    return target


def build_tiny_qwen_image_edit_plus(target: Path) -> Path:
    """QwenImageEditPlusPipeline (Qwen-Image-Edit-2509) with a tiny Qwen2.5-VL encoder.

    Its processor folder is written as the hub's is (tokenizer and image processor files) and
    model_index.json names Qwen2VLProcessor, as the real repo does; drylocal's loader reads it back.
    """
    if (target / "model_index.json").is_file():
        return target
    import json

    import torch
    from diffusers import AutoencoderKLQwenImage, FlowMatchEulerDiscreteScheduler, QwenImageEditPlusPipeline, QwenImageTransformer2DModel
    from transformers import Qwen2VLImageProcessor

    from model_registry.loaders._qwen_vl import ImageTextProcessor

    tokenizer = qwen_tokenizer(
        ["Describe the key features of the input image, then explain how to edit it. Picture 1: make it blue"],
        VISION_SPECIALS,
        1024,
    )
    torch.manual_seed(0)
    transformer = QwenImageTransformer2DModel(
        patch_size=2, in_channels=16, out_channels=4, num_layers=2, attention_head_dim=16, num_attention_heads=3,
        joint_attention_dim=16, guidance_embeds=False, axes_dims_rope=(8, 4, 4),
    )
    vae = AutoencoderKLQwenImage(base_dim=24, z_dim=4, dim_mult=[1, 2, 4], num_res_blocks=1, temperal_downsample=[False, True],
                                 latents_mean=[0.0] * 4, latents_std=[1.0] * 4)
    text_encoder = tiny_qwen25_vl(tokenizer, 16, [1, 1, 2])
    pipe = QwenImageEditPlusPipeline(scheduler=FlowMatchEulerDiscreteScheduler(), vae=vae, text_encoder=text_encoder,
                                     tokenizer=tokenizer, processor=None, transformer=transformer)
    pipe.save_pretrained(target)
    processor = ImageTextProcessor(tokenizer, Qwen2VLImageProcessor(min_pixels=28 * 28 * 4, max_pixels=28 * 28 * 64))
    processor.save_pretrained(target / "processor")
    index = json.loads((target / "model_index.json").read_text())
    index["processor"] = ["transformers", "Qwen2VLProcessor"]
    (target / "model_index.json").write_text(json.dumps(index, indent=2))
    return target
