"""The velocity estimator of S3Gen's flow matching: CosyVoice 2's causal ``ConditionalDecoder``.

Given the noisy mel ``x`` at flow time ``t`` it predicts the velocity dx/dt, conditioned on the
encoder's per-frame features ``mu``, the projected speaker vector ``spks`` (repeated over time) and
``cond`` (the prompt's mel frames, zeros elsewhere): 80 + 80 + 80 + 80 = 320 input channels.

It is a one-level U-Net without resampling: a down stage, 12 mid stages and an up stage that
concatenates the down stage's output as a skip, each stage a residual block (two causal 3-tap
convolutions with layer norm and Mish, the time embedding added in between) followed by 4
transformer blocks (pre-norm self-attention, 8 heads of 64 over 256 channels, and a GELU
feed-forward, as diffusers' ``BasicTransformerBlock`` with ``activation_fn="gelu"``); the down and up
stages end in a causal convolution. Attention sees every real frame (no chunk mask); padded frames
are masked out as keys. The time embedding is sinusoidal (scaled by 1000) through a SiLU MLP.

Attribute names are upstream's, including the list positions its ``nn.ModuleList`` stages and
``nn.Sequential`` blocks produce (``down_blocks.0.1.3.attn1.to_q``, ``block1.block.2``), so the
weights under ``flow.decoder.estimator.`` load with ``strict=True``. Differences from upstream, none
of which changes the released network's output:

- Only the released configuration: causal, one level (``channels=[256]``, so upstream's
  ``Downsample1D`` and transposed-convolution ``Upsample1D`` are never built), ``meanflow=False``
  (Chatterbox Turbo's distilled estimator adds a time mixer that the multilingual model lacks).
- The transformer block is written here instead of importing upstream's copy of a diffusers block
  and diffusers' ``Attention``; the parameters and the arithmetic are the same, with a boolean key
  mask where upstream adds -1e10 (both give the padded keys exactly zero weight).
- No weight initialization (weights are loaded) and no dropout (inference only, and 0 anyway).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ("ConditionalDecoder",)


def _timestep_embedding(t: torch.Tensor, size: int, scale: float = 1000.0) -> torch.Tensor:
    """(B,) flow times in [0, 1] -> (B, size) float32 sines then cosines (upstream's ``SinusoidalPosEmb``)."""
    half = size // 2
    frequencies = torch.exp(torch.arange(half, device=t.device).float() * -(math.log(10000) / (half - 1)))
    angles = scale * t.reshape(-1, 1) * frequencies[None, :]
    return torch.cat([angles.sin(), angles.cos()], dim=-1)


class _TimeMLP(nn.Module):
    """Upstream's ``TimestepEmbedding``: linear, SiLU, linear."""

    def __init__(self, in_size: int, out_size: int):
        super().__init__()
        self.linear_1 = nn.Linear(in_size, out_size)
        self.linear_2 = nn.Linear(out_size, out_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear_2(F.silu(self.linear_1(x)))


class _CausalConv1d(nn.Conv1d):
    """A stride-1 convolution padded on the left only, so no frame sees the future."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int):
        super().__init__(in_channels, out_channels, kernel_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(F.pad(x, (self.kernel_size[0] - 1, 0)))


class _SwapTimeAndChannels(nn.Module):
    """Lets a ``LayerNorm`` over channels sit inside an ``nn.Sequential`` of (B, C, T) convolutions."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.transpose(1, 2)


class _CausalBlock(nn.Module):
    """Upstream's ``CausalBlock1D``: masked causal convolution, layer norm over channels, Mish.

    ``block`` is the same ``nn.Sequential`` upstream builds, so the keys are ``block.0`` (the
    convolution) and ``block.2`` (the norm).
    """

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.block = nn.Sequential(
            _CausalConv1d(in_channels, out_channels, 3),
            _SwapTimeAndChannels(),
            nn.LayerNorm(out_channels),
            _SwapTimeAndChannels(),
            nn.Mish(),
        )

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self.block(x * mask) * mask


class _CausalResnetBlock(nn.Module):
    """Upstream's ``CausalResnetBlock1D``: two causal blocks, the time embedding added between them,
    and a 1x1 convolution on the skip."""

    def __init__(self, in_channels: int, out_channels: int, time_size: int):
        super().__init__()
        self.mlp = nn.Sequential(nn.Mish(), nn.Linear(time_size, out_channels))  # keys mlp.1.*
        self.block1 = _CausalBlock(in_channels, out_channels)
        self.block2 = _CausalBlock(out_channels, out_channels)
        self.res_conv = nn.Conv1d(in_channels, out_channels, 1)

    def forward(self, x: torch.Tensor, mask: torch.Tensor, time: torch.Tensor) -> torch.Tensor:
        h = self.block1(x, mask) + self.mlp(time)[:, :, None]
        h = self.block2(h, mask)
        return h + self.res_conv(x * mask)


class _SelfAttention(nn.Module):
    """diffusers' ``Attention`` as the block builds it: bias-free q/k/v, biased output (``to_out.0``)."""

    def __init__(self, size: int, heads: int, head_size: int):
        super().__init__()
        self.heads = heads
        inner = heads * head_size
        self.to_q = nn.Linear(size, inner, bias=False)
        self.to_k = nn.Linear(size, inner, bias=False)
        self.to_v = nn.Linear(size, inner, bias=False)
        self.to_out = nn.ModuleList([nn.Linear(inner, size)])

    def _split(self, x: torch.Tensor) -> torch.Tensor:
        return x.unflatten(-1, (self.heads, -1)).transpose(1, 2)  # (B, heads, T, head_size)

    def forward(self, x: torch.Tensor, key_mask: torch.Tensor) -> torch.Tensor:
        """x (B, T, size); key_mask (B, 1, 1, T) true on real frames."""
        q, k, v = (self._split(proj(x)) for proj in (self.to_q, self.to_k, self.to_v))
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=key_mask)
        return self.to_out[0](out.transpose(1, 2).flatten(2))


class _GELUProjection(nn.Module):
    """diffusers' ``GELU`` activation module: a linear layer (``proj``) then the exact GELU."""

    def __init__(self, in_size: int, out_size: int):
        super().__init__()
        self.proj = nn.Linear(in_size, out_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.gelu(self.proj(x))


class _FeedForward(nn.Module):
    """diffusers' ``FeedForward`` (mult 4, GELU); ``net`` keeps its layout, keys ``net.0.proj`` and
    ``net.2`` (position 1 is upstream's dropout)."""

    def __init__(self, size: int, mult: int = 4):
        super().__init__()
        self.net = nn.ModuleList([_GELUProjection(size, mult * size), nn.Identity(), nn.Linear(mult * size, size)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.net:
            x = layer(x)
        return x


class _TransformerBlock(nn.Module):
    """diffusers' ``BasicTransformerBlock`` as upstream uses it: self-attention and feed-forward, each
    pre-norm with a residual; no cross-attention (``norm2``/``attn2`` do not exist), no timestep use."""

    def __init__(self, size: int, heads: int, head_size: int):
        super().__init__()
        self.norm1 = nn.LayerNorm(size)
        self.attn1 = _SelfAttention(size, heads, head_size)
        self.norm3 = nn.LayerNorm(size)
        self.ff = _FeedForward(size)

    def forward(self, x: torch.Tensor, key_mask: torch.Tensor) -> torch.Tensor:
        x = x + self.attn1(self.norm1(x), key_mask)
        return x + self.ff(self.norm3(x))


class _Stage(nn.ModuleList):
    """One U-Net stage as upstream lists it: ``[resnet, transformer blocks]`` plus, for the down and up
    stages, a trailing causal convolution at index 2 that the caller applies (the down stage's skip
    is taken before it)."""

    def __init__(
        self,
        in_channels: int,
        channels: int,
        time_size: int,
        heads: int,
        head_size: int,
        blocks: int,
        with_conv: bool,
    ):
        transformers = nn.ModuleList(_TransformerBlock(channels, heads, head_size) for _ in range(blocks))
        stage: list[nn.Module] = [_CausalResnetBlock(in_channels, channels, time_size), transformers]
        if with_conv:
            stage.append(_CausalConv1d(channels, channels, 3))
        super().__init__(stage)

    def forward(self, x: torch.Tensor, mask: torch.Tensor, time: torch.Tensor) -> torch.Tensor:
        """(B, C_in, T) -> (B, C, T) through the resnet and the transformer blocks."""
        x = self[0](x, mask, time)
        key_mask = mask.bool()[:, None]  # (B, 1, 1, T)
        x = x.transpose(1, 2)
        for block in self[1]:
            x = block(x, key_mask)
        return x.transpose(1, 2)


class ConditionalDecoder(nn.Module):
    """Velocity estimator: (x, mask, mu, t, spks, cond) -> (B, out_channels, T).

    The defaults are the geometry S3Gen builds (in_channels 320 = x, mu, speaker, prompt mel).
    """

    def __init__(
        self,
        in_channels: int = 320,
        out_channels: int = 80,
        channels: int = 256,
        attention_head_dim: int = 64,
        num_heads: int = 8,
        n_blocks: int = 4,
        num_mid_blocks: int = 12,
    ):
        super().__init__()
        self.in_channels = in_channels
        self.out_channels = out_channels
        time_size = 4 * channels
        self.time_mlp = _TimeMLP(in_channels, time_size)
        shape = (time_size, num_heads, attention_head_dim, n_blocks)
        self.down_blocks = nn.ModuleList([_Stage(in_channels, channels, *shape, with_conv=True)])
        self.mid_blocks = nn.ModuleList(
            _Stage(channels, channels, *shape, with_conv=False) for _ in range(num_mid_blocks)
        )
        self.up_blocks = nn.ModuleList([_Stage(2 * channels, channels, *shape, with_conv=True)])
        self.final_block = _CausalBlock(channels, channels)
        self.final_proj = nn.Conv1d(channels, out_channels, 1)

    def forward(
        self,
        x: torch.Tensor,
        mask: torch.Tensor,
        mu: torch.Tensor,
        t: torch.Tensor,
        spks: torch.Tensor,
        cond: torch.Tensor,
    ) -> torch.Tensor:
        """x, mu, cond (B, 80, T); mask (B, 1, T) of ones and zeros; t (B,); spks (B, 80)."""
        time = self.time_mlp(_timestep_embedding(t, self.in_channels).to(t.dtype))
        x = torch.cat([x, mu, spks[:, :, None].expand(-1, -1, x.shape[-1]), cond], dim=1)

        (down,) = self.down_blocks
        skip = down(x, mask, time)
        x = down[2](skip * mask)
        for stage in self.mid_blocks:
            x = stage(x, mask, time)
        (up,) = self.up_blocks
        x = up(torch.cat([x, skip], dim=1), mask, time)
        x = up[2](x * mask)

        x = self.final_block(x, mask)
        return self.final_proj(x * mask) * mask
