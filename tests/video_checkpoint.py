"""A tiny random-weight LTX-Video pipeline (one transformer layer, an 8-channel causal video VAE with a
sharp posterior, a tiny T5), saved in the diffusers layout."""

from __future__ import annotations

from pathlib import Path

from tests.flux_checkpoint import _t5_tokenizer


def sharpen_posterior(vae) -> None:
    """Make a random LTX VAE's encoding deterministic: its encoder's last output channel is the log-variance
    (shared by every latent channel); pinned at -30 the sampled latent is the mean. Random weights give a
    log-variance near 0, a posterior as wide as the latents themselves, so no test could tell where a
    frame condition put a latent frame."""
    import torch

    with torch.no_grad():
        vae.encoder.conv_out.conv.weight[-1].zero_()
        vae.encoder.conv_out.conv.bias[-1] = -30.0


def build_tiny_ltx(target: Path, seed: int = 0) -> Path:
    if (target / "model_index.json").is_file():
        return target
    import torch
    from diffusers import AutoencoderKLLTXVideo, FlowMatchEulerDiscreteScheduler, LTXPipeline, LTXVideoTransformer3DModel
    from transformers import T5Config, T5EncoderModel

    torch.manual_seed(seed)
    transformer = LTXVideoTransformer3DModel(
        in_channels=8, out_channels=8, patch_size=1, patch_size_t=1, num_attention_heads=4, attention_head_dim=8,
        cross_attention_dim=32, num_layers=1, caption_channels=32,
    )
    vae = AutoencoderKLLTXVideo(
        in_channels=3, out_channels=3, latent_channels=8, block_out_channels=(8, 8, 8, 8),
        decoder_block_out_channels=(8, 8, 8, 8), layers_per_block=(1, 1, 1, 1, 1),
        decoder_layers_per_block=(1, 1, 1, 1, 1), spatio_temporal_scaling=(True, True, False, False),
        decoder_spatio_temporal_scaling=(True, True, False, False), decoder_inject_noise=(False, False, False, False, False),
        upsample_residual=(False, False, False, False), upsample_factor=(1, 1, 1, 1), timestep_conditioning=False,
        patch_size=1, patch_size_t=1, encoder_causal=True, decoder_causal=False,
    )
    sharpen_posterior(vae)
    text_encoder = T5EncoderModel(T5Config(vocab_size=64, d_model=32, d_kv=8, d_ff=37, num_layers=2, num_heads=4))
    pipe = LTXPipeline(scheduler=FlowMatchEulerDiscreteScheduler(), vae=vae, text_encoder=text_encoder,
                       tokenizer=_t5_tokenizer(), transformer=transformer)
    pipe.save_pretrained(target)
    return target
