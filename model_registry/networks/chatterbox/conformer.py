"""The upsampling Conformer encoder of S3Gen's token-to-mel flow (CosyVoice 2's ``UpsampleConformerEncoder``).

Speech tokens arrive at 25 Hz, already embedded (512 dims); the encoder returns features at the
50 Hz mel frame rate, one per mel frame the flow will draw:

- ``embed``: a linear layer and a layer norm, scaled by sqrt(512), with ESPnet's relative positional
  encoding (sinusoids for the relative distances T - 1 ... -(T - 1)), which every attention layer
  projects with its own ``linear_pos``.
- ``pre_lookahead_layer``: a convolution that sees the next 3 tokens (leaky ReLU), then a causal
  convolution over the last 3 positions, added back to its input; this is the encoder's only look
  into the future, which is why streaming callers hold back the last 3 tokens.
- ``encoders``: 6 pre-norm layers of relative-position self-attention (Transformer-XL's learned
  biases ``pos_bias_u`` for content and ``pos_bias_v`` for position) and a SiLU feed-forward.
- ``up_layer``: nearest-neighbour upsampling x2 and a causal 5-tap convolution.
- ``up_embed`` and ``up_encoders``: another such embedding and 4 more layers at 50 Hz; ``after_norm``.

Attribute names are upstream's (they are the keys under ``flow.encoder.`` in S3Gen's checkpoint).
Differences from upstream, none of which changes the released network's output beyond float
rounding (about 2e-6 at the released geometry):

- Only what S3Gen builds is offered: linear input layer, ESPnet relative positions, relative
  self-attention, no convolution module, no macaron feed-forward, no chunk masks. Dropout is left
  out (inference only), so there are no ``dropout`` submodules (they hold no weights).
- Upstream hard-codes 512 channels and a 3-token lookahead in two submodules; here they follow
  ``output_size`` and ``pre_lookahead_len`` so tiny test models can be built.
- The relative-position sinusoids are computed for the length at hand instead of kept in a table of
  5000 positions (upstream's ``pe`` is a plain attribute, not a buffer, so no key is affected), and
  the relative shift is a gather instead of upstream's pad-and-reshape trick. Attention runs through
  ``scaled_dot_product_attention`` with the position scores as its additive mask.
- ``output_size`` is an attribute, not upstream's ``output_size()`` method.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ("UpsampleConformerEncoder",)


def _relative_positions(length: int, size: int) -> torch.Tensor:
    """(1, 2 * length - 1, size) float32 sinusoids of the relative distances length - 1 down to
    -(length - 1), sine and cosine interleaved, as ESPnet's ``RelPositionalEncoding`` lays them out.

    Computed on the CPU in float32 like upstream's table, which it builds once at construction, so
    the encodings are the same bits whatever device the model runs on.
    """
    distances = torch.arange(length - 1, -length, -1, dtype=torch.float32)[:, None]
    frequencies = torch.exp(torch.arange(0, size, 2, dtype=torch.float32) * -(math.log(10000.0) / size))
    angles = distances * frequencies
    return torch.stack([angles.sin(), angles.cos()], dim=-1).flatten(1).unsqueeze(0)


class _LinearEmbedding(nn.Module):
    """Upstream's ``LinearNoSubsampling`` with its ESPnet relative positional encoding: keys
    ``out.0`` (linear) and ``out.1`` (layer norm)."""

    def __init__(self, in_size: int, out_size: int):
        super().__init__()
        self.out = nn.Sequential(nn.Linear(in_size, out_size), nn.LayerNorm(out_size, eps=1e-5))
        self.xscale = math.sqrt(out_size)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, T, in) -> (B, T, out) features and their (1, 2T - 1, out) relative encodings."""
        x = self.out(x) * self.xscale
        positions = _relative_positions(x.shape[1], x.shape[2])
        return x, positions.to(device=x.device, dtype=x.dtype)


class _PreLookahead(nn.Module):
    """Upstream's ``PreLookaheadLayer``: sees ``lookahead`` future positions, then two past ones.

    Padded positions of shorter batch items are not masked, as upstream: they can leak into the last
    ``lookahead`` real positions, so batch items of unequal length are not independent.
    """

    def __init__(self, channels: int, lookahead: int):
        super().__init__()
        self.lookahead = lookahead
        self.conv1 = nn.Conv1d(channels, channels, lookahead + 1)
        self.conv2 = nn.Conv1d(channels, channels, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.pad(x.transpose(1, 2), (0, self.lookahead))
        h = F.leaky_relu(self.conv1(h))
        h = self.conv2(F.pad(h, (2, 0)))
        return x + h.transpose(1, 2)


class _RelativeSelfAttention(nn.Module):
    """Upstream's ``RelPositionMultiHeadedAttention`` (Transformer-XL scoring, ESPnet's layout)."""

    def __init__(self, size: int, heads: int):
        super().__init__()
        if size % heads:
            raise ValueError(f"size {size} is not divisible by {heads} heads")
        self.h = heads
        self.d_k = size // heads
        self.linear_q = nn.Linear(size, size)
        self.linear_k = nn.Linear(size, size)
        self.linear_v = nn.Linear(size, size)
        self.linear_out = nn.Linear(size, size)
        self.linear_pos = nn.Linear(size, size, bias=False)
        self.pos_bias_u = nn.Parameter(torch.empty(heads, self.d_k))
        self.pos_bias_v = nn.Parameter(torch.empty(heads, self.d_k))
        nn.init.xavier_uniform_(self.pos_bias_u)
        nn.init.xavier_uniform_(self.pos_bias_v)

    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        return x.unflatten(-1, (self.h, self.d_k)).transpose(1, 2)  # (B, H, T, d_k)

    def forward(self, x: torch.Tensor, key_mask: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        """x (B, T, size); key_mask (B, 1, T) true on real frames; positions (1, 2T - 1, size)."""
        length = x.shape[1]
        q = self.linear_q(x).unflatten(-1, (self.h, self.d_k))  # (B, T, H, d_k): the biases add per head
        k = self._heads(self.linear_k(x))
        v = self._heads(self.linear_v(x))
        p = self._heads(self.linear_pos(positions))  # (1, H, 2T - 1, d_k)
        q_content = (q + self.pos_bias_u).transpose(1, 2)
        q_position = (q + self.pos_bias_v).transpose(1, 2)

        # Position scores against every relative distance, then for query i and key j the column of
        # distance i - j, which sits at index (T - 1) - i + j in the encodings' order.
        by_distance = q_position @ p.transpose(-2, -1)  # (B, H, T, 2T - 1)
        steps = torch.arange(length, device=x.device)
        column = (length - 1) - steps[:, None] + steps[None, :]
        position_scores = by_distance.gather(-1, column.expand(*by_distance.shape[:2], length, length))

        # The content term goes through SDPA; the position term rides along as its additive mask.
        bias = (position_scores / math.sqrt(self.d_k)).masked_fill(~key_mask[:, None], float("-inf"))
        out = F.scaled_dot_product_attention(q_content, k, v, attn_mask=bias)
        return self.linear_out(out.transpose(1, 2).flatten(2))


class _FeedForward(nn.Module):
    """Upstream's ``PositionwiseFeedForward`` with the SiLU ("swish") S3Gen configures."""

    def __init__(self, size: int, hidden: int):
        super().__init__()
        self.w_1 = nn.Linear(size, hidden)
        self.w_2 = nn.Linear(hidden, size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.w_2(F.silu(self.w_1(x)))


class _ConformerLayer(nn.Module):
    """Upstream's ``ConformerEncoderLayer`` as S3Gen builds it: pre-norm self-attention and
    feed-forward, each with a residual (no convolution module, no macaron half-step)."""

    def __init__(self, size: int, heads: int, hidden: int):
        super().__init__()
        self.self_attn = _RelativeSelfAttention(size, heads)
        self.feed_forward = _FeedForward(size, hidden)
        self.norm_ff = nn.LayerNorm(size, eps=1e-12)
        self.norm_mha = nn.LayerNorm(size, eps=1e-12)

    def forward(self, x: torch.Tensor, key_mask: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        x = x + self.self_attn(self.norm_mha(x), key_mask, positions)
        return x + self.feed_forward(self.norm_ff(x))


class _Upsample(nn.Module):
    """Upstream's encoder ``Upsample1D``: repeat each frame ``stride`` times, then a causal
    convolution over the last ``2 * stride + 1`` frames."""

    def __init__(self, channels: int, stride: int):
        super().__init__()
        self.stride = stride
        self.conv = nn.Conv1d(channels, channels, 2 * stride + 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, T) -> (B, C, stride * T)."""
        x = x.repeat_interleave(self.stride, dim=-1)
        return self.conv(F.pad(x, (2 * self.stride, 0)))


class UpsampleConformerEncoder(nn.Module):
    """Embedded tokens (B, T, input_size) -> features (B, 2T, output_size) at the mel frame rate.

    The defaults are the geometry S3Gen builds.
    """

    def __init__(
        self,
        input_size: int = 512,
        output_size: int = 512,
        attention_heads: int = 8,
        linear_units: int = 2048,
        num_blocks: int = 6,
        num_up_blocks: int = 4,
        pre_lookahead_len: int = 3,
        upsample_stride: int = 2,
    ):
        super().__init__()
        self.output_size = output_size
        self.embed = _LinearEmbedding(input_size, output_size)
        self.pre_lookahead_layer = _PreLookahead(output_size, pre_lookahead_len)
        self.encoders = nn.ModuleList(
            _ConformerLayer(output_size, attention_heads, linear_units) for _ in range(num_blocks)
        )
        self.up_layer = _Upsample(output_size, upsample_stride)
        self.up_embed = _LinearEmbedding(output_size, output_size)
        self.up_encoders = nn.ModuleList(
            _ConformerLayer(output_size, attention_heads, linear_units) for _ in range(num_up_blocks)
        )
        self.after_norm = nn.LayerNorm(output_size, eps=1e-5)

    def forward(self, xs: torch.Tensor, xs_lens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """xs (B, T, input_size) with valid lengths xs_lens (B,) -> (B, sT, output_size) features and
        their (B, 1, sT) mask, true on real frames (s = ``upsample_stride``)."""
        mask = _frames_within(xs_lens, xs.shape[1])
        xs, positions = self.embed(xs)
        xs = self.pre_lookahead_layer(xs)
        for layer in self.encoders:
            xs = layer(xs, mask, positions)

        xs = self.up_layer(xs.transpose(1, 2)).transpose(1, 2)
        mask = _frames_within(xs_lens * self.up_layer.stride, xs.shape[1])
        xs, positions = self.up_embed(xs)
        for layer in self.up_encoders:
            xs = layer(xs, mask, positions)
        return self.after_norm(xs), mask


def _frames_within(lengths: torch.Tensor, frames: int) -> torch.Tensor:
    """(B, 1, frames) mask, true where the frame index is below the item's length."""
    return (torch.arange(frames, device=lengths.device)[None, :] < lengths[:, None]).unsqueeze(1)
