"""A tiny random-weight LTX-2 audio+video pipeline, built with the real diffusers and transformers classes."""

from __future__ import annotations

import string
from pathlib import Path

from tests.video_checkpoint import sharpen_posterior

__all__ = ("build_tiny_ltx2",)

_SPECIALS = ["<pad>", "<eos>", "<bos>", "<unk>", "<mask>",
             "<start_of_turn>", "<end_of_turn>", "<start_of_image>", "<end_of_image>", "<image_soft_token>"]


def _gemma_tokenizer():
    from transformers import GemmaTokenizerFast

    # Gemma's layout (pad=0, eos=1, bos=2) and its byte-fallback BPE, but with no merges: a character tokenizer
    # whose 256 byte pieces let any prompt encode without <unk>.
    pieces = [*_SPECIALS, *(f"<0x{b:02X}>" for b in range(256)), "\u2581", *string.ascii_lowercase, *string.digits]
    vocab = {piece: i for i, piece in enumerate(pieces)}
    return GemmaTokenizerFast(vocab=vocab, merges=[], add_bos_token=True, model_max_length=1024)


def _gemma3(tokenizer):
    from transformers import Gemma3Config, Gemma3ForConditionalGeneration, Gemma3TextConfig, SiglipVisionConfig

    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in ("<start_of_image>", "<end_of_image>", "<image_soft_token>")}
    text = Gemma3TextConfig(
        vocab_size=len(tokenizer), hidden_size=16, intermediate_size=32, num_hidden_layers=2, num_attention_heads=2,
        num_key_value_heads=1, head_dim=8, max_position_embeddings=2048, sliding_window=64,
        pad_token_id=0, eos_token_id=1, bos_token_id=2,
    )
    # Gemma3ForConditionalGeneration always carries a SigLIP tower; 28px / 14px patches / 4 tokens is the smallest
    # geometry its projector's pooling accepts. The LTX-2 pipelines never feed it images.
    vision = SiglipVisionConfig(hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2,
                                image_size=28, patch_size=14)
    config = Gemma3Config(text_config=text, vision_config=vision, mm_tokens_per_image=4,
                          boi_token_index=ids["<start_of_image>"], eoi_token_index=ids["<end_of_image>"],
                          image_token_index=ids["<image_soft_token>"])
    return Gemma3ForConditionalGeneration(config).eval()


def build_tiny_ltx2(target: Path, seed: int = 0) -> Path:
    """LTX2Pipeline (also loadable as LTX2ImageToVideoPipeline / LTX2ConditionPipeline): a two-block audio-video
    transformer, a video VAE with the real 32x spatial / 8x temporal compression, a 4x audio VAE over 8 mel bins,
    a 24 kHz vocoder, and a two-layer Gemma 3 with an in-memory tokenizer."""
    import torch
    from diffusers import (
        AutoencoderKLLTX2Audio, AutoencoderKLLTX2Video, FlowMatchEulerDiscreteScheduler, LTX2Pipeline,
        LTX2VideoTransformer3DModel,
    )
    from diffusers.pipelines.ltx2 import LTX2TextConnectors
    from diffusers.pipelines.ltx2.vocoder import LTX2Vocoder

    torch.manual_seed(seed)
    tokenizer = _gemma_tokenizer()
    text_encoder = _gemma3(tokenizer)
    text_hidden = text_encoder.config.text_config.hidden_size
    # The pipeline stacks every hidden state (embeddings + each layer) before the connectors project them.
    text_layers = text_encoder.config.text_config.num_hidden_layers + 1

    # Same down/up block layout as the released VAE (patch 4, then spatial, temporal and two spatiotemporal
    # stages), so latent shapes follow the real checkpoint's 32x / 8x ratios, just with 8 channels throughout.
    vae = AutoencoderKLLTX2Video(
        latent_channels=8, block_out_channels=(8, 8, 8, 8), decoder_block_out_channels=(8, 8, 8),
        layers_per_block=(1, 1, 1, 1, 1), decoder_layers_per_block=(1, 1, 1, 1),
        upsample_residual=(False, False, False), upsample_factor=(1, 1, 1), decoder_causal=False,
        # The class's default derives 64x / 16x from that layout (it counts every stage as spatial and temporal);
        # the released config states the true ratios, which the pipelines size latents by.
        spatial_compression_ratio=32, temporal_compression_ratio=8,
        # Zero rather than reflect padding in the decoder, so a 32-pixel side (a single latent row) still decodes.
        decoder_spatial_padding_mode="zeros",
    )
    sharpen_posterior(vae)
    # The pipelines hard-code a 4x time and mel compression for audio, which three ch_mult levels give.
    # base_channels doubles as the size of latents_mean/std, applied to packed latents of latent_channels *
    # (mel_bins / 4) features, so it has to equal 2 * 8 / 4.
    audio_vae = AutoencoderKLLTX2Audio(
        base_channels=4, output_channels=2, ch_mult=(1, 2, 4), num_res_blocks=1, in_channels=2, resolution=32,
        latent_channels=2, mel_bins=8, sample_rate=16000, mel_hop_length=160,
    )
    audio_features = audio_vae.config.latent_channels * audio_vae.config.mel_bins // audio_vae.mel_compression_ratio
    # 100 mel frames/s (16 kHz / hop 160) upsampled 6*5*8 = 240x gives the released vocoder's 24 kHz waveform.
    vocoder = LTX2Vocoder(
        in_channels=audio_vae.config.output_channels * audio_vae.config.mel_bins, hidden_channels=32,
        out_channels=2, upsample_kernel_sizes=[12, 15, 16], upsample_factors=[6, 5, 8], resnet_kernel_sizes=[3],
        resnet_dilations=[[1, 3]], output_sampling_rate=24000,
    )
    transformer = LTX2VideoTransformer3DModel(
        in_channels=vae.config.latent_channels, out_channels=vae.config.latent_channels, patch_size=1,
        patch_size_t=1, num_attention_heads=2, attention_head_dim=8, cross_attention_dim=16,
        audio_in_channels=audio_features, audio_out_channels=audio_features, audio_num_attention_heads=2,
        audio_attention_head_dim=4, audio_cross_attention_dim=8, num_layers=2, caption_channels=text_hidden,
        rope_double_precision=False, rope_type="split",
    )
    connectors = LTX2TextConnectors(
        caption_channels=text_hidden, text_proj_in_factor=text_layers,
        video_connector_num_attention_heads=2, video_connector_attention_head_dim=8, video_connector_num_layers=1,
        video_connector_num_learnable_registers=None, audio_connector_num_attention_heads=2,
        audio_connector_attention_head_dim=8, audio_connector_num_layers=1,
        audio_connector_num_learnable_registers=None, connector_rope_base_seq_len=32,
        rope_double_precision=False, rope_type="split",
    )
    pipe = LTX2Pipeline(
        scheduler=FlowMatchEulerDiscreteScheduler(), vae=vae, audio_vae=audio_vae, text_encoder=text_encoder,
        tokenizer=tokenizer, connectors=connectors, transformer=transformer, vocoder=vocoder,
    )
    pipe.save_pretrained(target)
    return target
