"""BEN2 ("Background Erase Network", PramaLLC, MIT): a foreground-mask network, reimplemented here.

The official code is one file (``BEN2.py``, class ``BEN_Base``): a Swin-B-like backbone (window 12,
depths 2/2/18/2) and an MVANet-style decoder. The image is seen twice: as its four quadrants at full
resolution ("local" views) and as a half-size copy of the whole ("global" view), five backbone passes
that the decoder fuses with cross-attention (``multifieldcrossatt``: the global view looks at pooled
local detail; ``dec_blk*``: each quadrant looks at pooled global context).

Every module attribute is named as upstream names it, so the official ``BEN2_Base.pth`` and the
hub's ``model.safetensors`` load with ``strict=True``. Default constructor arguments give the official
network (94,134,658 parameters); smaller ones exist so tests can build a tiny model.

Differences from upstream that do not change results: the ImageNet normalization that upstream does in
its torchvision preprocessing happens inside :meth:`BEN2.forward` (which takes [0, 1] RGB), attention
goes through ``scaled_dot_product_attention`` (same math, less memory), and upstream's forced fp16
autocast on CUDA is left to the caller (the loader picks the dtype).
"""

from __future__ import annotations

import inspect
import json
import math
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

__all__ = ("BEN2", "load_ben2", "predict_mask")

# Upstream normalizes with torchvision's ImageNet statistics before the network sees the image.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

# The working resolution the official weights were trained at (upstream resizes every image to it).
WORKING_SIZE = 1024


# --------------------------------------------------------------------------------------------------
# Layout helpers. "Quadrants" is upstream's einops pattern 'b c (hg h) (wg w) -> (hg wg b) c h w' with
# hg = wg = 2: the batch becomes [top-left, top-right, bottom-left, bottom-right] (each over b), and the
# order matters because each quadrant has its own attention weights in the decoder.
# --------------------------------------------------------------------------------------------------


def _to_quadrants(x: torch.Tensor) -> torch.Tensor:
    b, c, h, w = x.shape
    x = x.reshape(b, c, 2, h // 2, 2, w // 2)
    return x.permute(2, 4, 0, 1, 3, 5).reshape(4 * b, c, h // 2, w // 2)


def _from_quadrants(x: torch.Tensor) -> torch.Tensor:
    b4, c, h, w = x.shape
    b = b4 // 4
    x = x.reshape(2, 2, b, c, h, w)
    return x.permute(2, 3, 0, 4, 1, 5).reshape(b, c, 2 * h, 2 * w)


def _tokens(x: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) -> (H*W, B, C): nn.MultiheadAttention's sequence-first layout."""
    return x.flatten(2).permute(2, 0, 1)


def _untokens(x: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """(H*W, B, C) -> (B, C, H, W)."""
    return x.permute(1, 2, 0).reshape(x.shape[1], x.shape[2], h, w)


# --------------------------------------------------------------------------------------------------
# Swin Transformer backbone (the detection variant: pads to whole windows instead of shrinking them,
# and returns every stage's normalized output plus the patch embedding).
# --------------------------------------------------------------------------------------------------


class _Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


def _relative_position_index(window: int) -> torch.Tensor:
    """For every (query, key) pair of a window, the row of the bias table for their 2-D offset."""
    rows, cols = torch.meshgrid(torch.arange(window), torch.arange(window), indexing="ij")
    rows, cols = rows.flatten(), cols.flatten()
    d_row = rows[:, None] - rows[None, :] + window - 1  # shifted to start at 0
    d_col = cols[:, None] - cols[None, :] + window - 1
    return d_row * (2 * window - 1) + d_col


class _WindowAttention(nn.Module):
    def __init__(self, dim: int, window: int, heads: int):
        super().__init__()
        self.window = window
        self.heads = heads
        self.scale = (dim // heads) ** -0.5
        self.relative_position_bias_table = nn.Parameter(torch.zeros((2 * window - 1) ** 2, heads))
        nn.init.trunc_normal_(self.relative_position_bias_table, std=0.02)
        # Persistent because upstream's is: the checkpoint carries it, and strict loading wants it.
        self.register_buffer("relative_position_index", _relative_position_index(window))
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, shift_mask: torch.Tensor | None) -> torch.Tensor:
        """x: (windows*B, N, C); shift_mask: (windows, N, N) additive, or None for unshifted windows."""
        bw, n, c = x.shape
        q, k, v = self.qkv(x).reshape(bw, n, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        bias = self.relative_position_bias_table[self.relative_position_index.view(-1)]
        bias = bias.view(n, n, self.heads).permute(2, 0, 1).unsqueeze(0)  # 1, heads, N, N
        if shift_mask is not None:
            windows = shift_mask.shape[0]
            # Windows are batch-minor (window index varies fastest), so the mask repeats per image.
            bias = (bias + shift_mask.unsqueeze(1)).repeat(bw // windows, 1, 1, 1)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias.to(q.dtype), scale=self.scale)
        return self.proj(out.transpose(1, 2).reshape(bw, n, c))


def _window_partition(x: torch.Tensor, window: int) -> torch.Tensor:
    """(B, H, W, C) -> (B*windows, window*window, C), windows in row-major order within each image."""
    b, h, w, c = x.shape
    x = x.view(b, h // window, window, w // window, window, c).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(-1, window * window, c)


def _window_merge(x: torch.Tensor, window: int, h: int, w: int) -> torch.Tensor:
    c = x.shape[-1]
    b = x.shape[0] // ((h // window) * (w // window))
    x = x.view(b, h // window, w // window, window, window, c).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(b, h, w, c)


class _SwinBlock(nn.Module):
    def __init__(self, dim: int, heads: int, window: int, shift: int, mlp_ratio: float):
        super().__init__()
        self.window = window
        self.shift = shift
        self.norm1 = nn.LayerNorm(dim)
        self.attn = _WindowAttention(dim, window, heads)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = _Mlp(dim, int(dim * mlp_ratio))

    def forward(self, x: torch.Tensor, h: int, w: int, shift_mask: torch.Tensor) -> torch.Tensor:
        b, _, c = x.shape
        y = self.norm1(x).view(b, h, w, c)
        # Zero-pad to whole windows (after the norm, as upstream does: the padding is attended to).
        pad_w = (self.window - w % self.window) % self.window
        pad_h = (self.window - h % self.window) % self.window
        y = F.pad(y, (0, 0, 0, pad_w, 0, pad_h))
        hp, wp = h + pad_h, w + pad_w
        if self.shift:
            y = torch.roll(y, shifts=(-self.shift, -self.shift), dims=(1, 2))
        y = self.attn(_window_partition(y, self.window), shift_mask if self.shift else None)
        y = _window_merge(y, self.window, hp, wp)
        if self.shift:
            y = torch.roll(y, shifts=(self.shift, self.shift), dims=(1, 2))
        y = y[:, :h, :w, :].reshape(b, h * w, c)
        x = x + y
        return x + self.mlp(self.norm2(x))


class _PatchMerging(nn.Module):
    """Halves the resolution by stacking each 2x2 neighbourhood into channels, then projecting."""

    def __init__(self, dim: int):
        super().__init__()
        self.reduction = nn.Linear(4 * dim, 2 * dim, bias=False)
        self.norm = nn.LayerNorm(4 * dim)

    def forward(self, x: torch.Tensor, h: int, w: int) -> torch.Tensor:
        b, _, c = x.shape
        x = x.view(b, h, w, c)
        if h % 2 or w % 2:
            x = F.pad(x, (0, 0, 0, w % 2, 0, h % 2))
        # The stacking order is baked into the reduction weights: (0,0), (1,0), (0,1), (1,1).
        x = torch.cat([x[:, 0::2, 0::2], x[:, 1::2, 0::2], x[:, 0::2, 1::2], x[:, 1::2, 1::2]], -1)
        return self.reduction(self.norm(x.view(b, -1, 4 * c)))


def _shift_mask(h: int, w: int, window: int, shift: int, device, dtype) -> torch.Tensor:
    """Additive mask that stops shifted windows from mixing regions the cyclic roll brought together."""
    hp, wp = math.ceil(h / window) * window, math.ceil(w / window) * window
    regions = torch.zeros((1, hp, wp, 1), device=device)
    label = 0
    for rows in (slice(0, -window), slice(-window, -shift), slice(-shift, None)):
        for cols in (slice(0, -window), slice(-window, -shift), slice(-shift, None)):
            regions[:, rows, cols, :] = label
            label += 1
    regions = _window_partition(regions, window).squeeze(-1)  # windows, N
    different = regions.unsqueeze(1) != regions.unsqueeze(2)
    # -100 rather than -inf, as upstream: after softmax the two are indistinguishable but -100 is finite.
    return torch.zeros(different.shape, device=device, dtype=dtype).masked_fill(different, -100.0)


class _SwinStage(nn.Module):
    def __init__(self, dim: int, depth: int, heads: int, window: int, mlp_ratio: float, downsample: bool):
        super().__init__()
        self.window = window
        self.shift = window // 2
        # Alternate plain and shifted windows so information crosses window borders.
        self.blocks = nn.ModuleList(
            _SwinBlock(dim, heads, window, 0 if i % 2 == 0 else window // 2, mlp_ratio) for i in range(depth)
        )
        self.downsample = _PatchMerging(dim) if downsample else None

    def forward(self, x: torch.Tensor, h: int, w: int):
        mask = _shift_mask(h, w, self.window, self.shift, x.device, x.dtype)
        for block in self.blocks:
            x = block(x, h, w, mask)
        if self.downsample is None:
            return x, x, h, w
        return x, self.downsample(x, h, w), (h + 1) // 2, (w + 1) // 2


class _PatchEmbed(nn.Module):
    def __init__(self, patch: int, dim: int):
        super().__init__()
        self.patch = patch
        self.proj = nn.Conv2d(3, dim, kernel_size=patch, stride=patch)
        self.norm = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        x = F.pad(x, (0, (-w) % self.patch, 0, (-h) % self.patch))
        x = self.proj(x)
        b, c, h, w = x.shape
        return self.norm(x.flatten(2).transpose(1, 2)).transpose(1, 2).reshape(b, c, h, w)


class _SwinBackbone(nn.Module):
    def __init__(self, embed_dim: int, depths, num_heads, window_size: int, patch_size: int, mlp_ratio: float):
        super().__init__()
        self.patch_embed = _PatchEmbed(patch_size, embed_dim)
        self.dims = [embed_dim * 2**i for i in range(len(depths))]
        self.layers = nn.ModuleList(
            _SwinStage(dim, depth, heads, window_size, mlp_ratio, downsample=i < len(depths) - 1)
            for i, (dim, depth, heads) in enumerate(zip(self.dims, depths, num_heads))
        )
        for i, dim in enumerate(self.dims):
            self.add_module(f"norm{i}", nn.LayerNorm(dim))

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The patch embedding, then each stage's normalized output (before its patch merging)."""
        x = self.patch_embed(x)
        b, _, h, w = x.shape
        features = [x]
        x = x.flatten(2).transpose(1, 2)
        for i, stage in enumerate(self.layers):
            out, x, next_h, next_w = stage(x, h, w)
            out = getattr(self, f"norm{i}")(out)
            features.append(out.view(b, h, w, -1).permute(0, 3, 1, 2).contiguous())
            h, w = next_h, next_w
        return features


# --------------------------------------------------------------------------------------------------
# Decoder.
# --------------------------------------------------------------------------------------------------


def _conv_norm_gelu(cin: int, cout: int) -> nn.Sequential:
    # InstanceNorm2d without affine parameters: nothing of it is in the checkpoint.
    return nn.Sequential(nn.Conv2d(cin, cout, kernel_size=3, padding=1), nn.InstanceNorm2d(cout), nn.GELU())


def _sine_position(h: int, w: int, channels: int, device, dtype) -> torch.Tensor:
    """DETR's normalized 2-D sine embedding, as (H*W, 1, channels): y half then x half."""
    feats = channels // 2
    scale = 2 * math.pi
    eps = 1e-6
    y = (torch.arange(1, h + 1, dtype=torch.float32, device=device) - 0.5) / (h + eps) * scale
    x = (torch.arange(1, w + 1, dtype=torch.float32, device=device) - 0.5) / (w + eps) * scale
    # Channel pairs (2k, 2k+1) share the frequency 10000^(2k/feats): sin for the even, cos for the odd.
    freq = 10000 ** (2 * (torch.arange(feats, dtype=torch.float32, device=device) // 2) / feats)

    def embed(pos: torch.Tensor) -> torch.Tensor:
        angles = pos[:, None] / freq
        return torch.stack((angles[:, 0::2].sin(), angles[:, 1::2].cos()), dim=2).flatten(1)

    pos_y = embed(y)[:, None, :].expand(h, w, feats)
    pos_x = embed(x)[None, :, :].expand(h, w, feats)
    return torch.cat((pos_y, pos_x), dim=-1).reshape(h * w, 1, channels).to(dtype)


def _attend(attention: nn.MultiheadAttention, q, k, v) -> torch.Tensor:
    # The weights are never used; not asking for them lets torch take its fused attention kernel.
    return attention(q, k, v, need_weights=False)[0]


def _pooled(x: torch.Tensor, ratios, h: int, w: int) -> list[torch.Tensor]:
    """x average-pooled to (h/r, w/r) for each ratio (upstream rounds half to even, as Python does)."""
    return [F.adaptive_avg_pool2d(x, (round(h / r), round(w / r))) for r in ratios]


class _GlobalLocalAttention(nn.Module):
    """Upstream's MCLM, the bottleneck: global view and quadrants exchange context.

    First the global view (queries) attends to the stitched quadrants pooled at several scales, then
    each quadrant (queries) attends to its own part of the refreshed global view. Both steps share
    ``norm1``/``norm2``, exactly as upstream does.
    """

    def __init__(self, dim: int, heads: int, pool_ratios=(1, 4, 8)):
        super().__init__()
        self.pool_ratios = tuple(pool_ratios)
        # [0]: global <- pooled locals; [1..4]: quadrant i <- its quarter of the global view.
        self.attention = nn.ModuleList(nn.MultiheadAttention(dim, heads, dropout=0.1) for _ in range(5))
        self.linear1 = nn.Linear(dim, 2 * dim)
        self.linear2 = nn.Linear(2 * dim, dim)
        self.linear3 = nn.Linear(dim, 2 * dim)
        self.linear4 = nn.Linear(2 * dim, dim)
        self.norm1 = nn.LayerNorm(dim)
        self.norm2 = nn.LayerNorm(dim)

    def forward(self, local: torch.Tensor, glb: torch.Tensor) -> torch.Tensor:
        """local: (4, C, h, w) quadrants; glb: (1, C, h, w). Returns the five refreshed maps."""
        _, c, h, w = local.shape
        pools = _pooled(_from_quadrants(local), self.pool_ratios, h, w)
        keys_pos = torch.cat([_sine_position(*p.shape[-2:], c, p.device, p.dtype) for p in pools])
        pools = torch.cat([_tokens(p) for p in pools])

        g = _tokens(glb)
        g_pos = _sine_position(h, w, c, g.device, g.dtype)
        g = self.norm1(g + _attend(self.attention[0], g + g_pos, pools + keys_pos, pools))
        g = self.norm2(g + self.linear2(F.gelu(self.linear1(g))))

        g_quadrants = _tokens(_to_quadrants(_untokens(g, h, w)))  # (h*w/4, 4, C)
        loc = _tokens(local)  # (h*w, 4, C)
        attended = []
        for i in range(4):  # each quadrant has its own attention weights
            g_i = g_quadrants[:, i : i + 1]
            attended.append(_attend(self.attention[i + 1], loc[:, i : i + 1], g_i, g_i))
        attended = torch.cat(attended, dim=1)
        loc = self.norm1(loc + attended)
        loc = self.norm2(loc + self.linear4(F.gelu(self.linear3(loc))))
        return _untokens(torch.cat((loc, g), dim=1), h, w)


class _LocalRefinement(nn.Module):
    """Upstream's MCRM, one decoder step.

    The global view predicts a coarse saliency map that gates the quadrants; each gated quadrant then
    attends to its quarter of the global view pooled at several scales, and the refreshed quadrants
    are folded back into the global view.
    """

    def __init__(self, dim: int, heads: int, pool_ratios=(2, 4, 8)):
        super().__init__()
        self.pool_ratios = tuple(pool_ratios)
        self.attention = nn.ModuleList(nn.MultiheadAttention(dim, heads, dropout=0.1) for _ in range(4))
        self.linear3 = nn.Linear(dim, 2 * dim)
        self.linear4 = nn.Linear(2 * dim, dim)
        self.norm1 = nn.LayerNorm(dim)
        self.norm2 = nn.LayerNorm(dim)
        self.sal_conv = nn.Conv2d(dim, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (5, C, h, w), four quadrants then the global view; returns the same layout refreshed."""
        _, c, h, w = x.shape
        local, glb = x[:4], x[4:]

        gate = torch.sigmoid(self.sal_conv(glb))
        gate = F.interpolate(gate, size=(2 * h, 2 * w), mode="nearest")
        local = local * _to_quadrants(gate)

        # Pool sizes follow the quadrant's size h, not the (half as large) global quarter's.
        pools = _pooled(_to_quadrants(glb), self.pool_ratios, h, w)
        pools = torch.cat([p.flatten(2) for p in pools], dim=2).permute(2, 0, 1)  # (n, 4, C)
        loc = _tokens(local)
        attended = []
        for i in range(4):  # each quadrant has its own attention weights
            p_i = pools[:, i : i + 1]
            attended.append(_attend(self.attention[i], loc[:, i : i + 1], p_i, p_i))
        attended = torch.cat(attended, dim=1)
        loc = self.norm1(loc + attended)
        loc = self.norm2(loc + self.linear4(F.gelu(self.linear3(loc))))
        local = _untokens(loc, h, w)
        glb = glb + F.interpolate(_from_quadrants(local), size=(h, w), mode="nearest")
        return torch.cat((local, glb), dim=0)


def _resize_as(x: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return F.interpolate(x, size=like.shape[-2:], mode="bilinear")


def _double(x: torch.Tensor) -> torch.Tensor:
    return F.interpolate(x, scale_factor=2, mode="nearest")


class BEN2(nn.Module):
    """BEN2 base. ``forward`` maps [0, 1] RGB (B, 3, H, W) to a [0, 1] foreground mask (B, 1, H, W).

    H and W must be multiples of 128 (quadrants, 4x patches, three mergings, then the bottleneck is
    split in quadrants again) and large enough that the coarsest pooling keeps a token; the weights
    were trained at 1024 x 1024.
    """

    def __init__(
        self,
        embed_dim: int = 128,
        depths: tuple[int, ...] = (2, 2, 18, 2),
        num_heads: tuple[int, ...] = (4, 8, 16, 32),
        window_size: int = 12,
        patch_size: int = 4,
        mlp_ratio: float = 4.0,
        decoder_dim: int = 128,
        decoder_heads: int = 1,
        mask_head_dim: int = 384,
    ):
        super().__init__()
        if len(depths) != 4 or len(num_heads) != 4:
            raise ValueError("BEN2's decoder takes exactly four backbone stages")
        self.config = {
            "embed_dim": embed_dim,
            "depths": list(depths),
            "num_heads": list(num_heads),
            "window_size": window_size,
            "patch_size": patch_size,
            "mlp_ratio": mlp_ratio,
            "decoder_dim": decoder_dim,
            "decoder_heads": decoder_heads,
            "mask_head_dim": mask_head_dim,
        }
        self.backbone = _SwinBackbone(embed_dim, depths, num_heads, window_size, patch_size, mlp_ratio)
        d = decoder_dim
        # Modules are registered in upstream's order so even the state dict's key order matches.
        # Deep-supervision heads from training; forward never uses them, the checkpoint has them.
        for i in range(5, 0, -1):
            self.add_module(f"sideout{i}", nn.Sequential(nn.Conv2d(d, 1, kernel_size=3, padding=1)))
        # Project each backbone feature to the decoder width: output1 takes the patch embedding,
        # output2..5 the four stages.
        in_dims = [embed_dim, *self.backbone.dims]
        for i in range(5, 0, -1):
            self.add_module(f"output{i}", _conv_norm_gelu(in_dims[i - 1], d))

        self.multifieldcrossatt = _GlobalLocalAttention(d, decoder_heads, (1, 4, 8))
        for i in range(1, 5):
            self.add_module(f"conv{i}", _conv_norm_gelu(d, d))
        for i in range(1, 5):
            self.add_module(f"dec_blk{i}", _LocalRefinement(d, decoder_heads, (2, 4, 8)))

        self.insmask_head = nn.Sequential(
            nn.Conv2d(d, mask_head_dim, kernel_size=3, padding=1),
            nn.InstanceNorm2d(mask_head_dim),
            nn.GELU(),
            nn.Conv2d(mask_head_dim, mask_head_dim, kernel_size=3, padding=1),
            nn.InstanceNorm2d(mask_head_dim),
            nn.GELU(),
            nn.Conv2d(mask_head_dim, d, kernel_size=3, padding=1),
        )
        # Full-resolution features straight from the pixels, added back while upsampling the mask.
        self.shallow = nn.Sequential(nn.Conv2d(3, d, kernel_size=3, padding=1))
        self.upsample1 = _conv_norm_gelu(d, d)
        self.upsample2 = _conv_norm_gelu(d, d)
        self.output = nn.Sequential(nn.Conv2d(d, 1, kernel_size=3, padding=1))

        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def _check_size(self, h: int, w: int) -> None:
        unit = 32 * self.config["patch_size"]
        if h % unit or w % unit:
            raise ValueError(f"BEN2 needs height and width in multiples of {unit}, got {h} x {w}")
        bottleneck = min(h, w) // unit * 2
        if round(bottleneck / 8) < 1:  # the coarsest (1/8) pooling of the bottleneck must keep a token
            raise ValueError(f"{h} x {w} is too small for BEN2 (at least {3 * unit} x {3 * unit})")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, _, h, w = x.shape
        self._check_size(h, w)
        x = (x - self.mean.to(x.dtype)) / self.std.to(x.dtype)

        shallow = self.shallow(x)
        # Five backbone passes per image: its four full-resolution quadrants and a half-size whole.
        glb = F.interpolate(x, scale_factor=0.5, mode="bilinear")
        quads = _to_quadrants(x).view(4, b, *glb.shape[1:]).transpose(0, 1)  # b, 4, ...
        views = torch.cat((quads, glb.unsqueeze(1)), dim=1).flatten(0, 1)  # image-major groups of 5
        features = self.backbone(views)

        masks = []
        for i in range(b):
            f = [feat[5 * i : 5 * i + 5] for feat in features]
            e1, e2, e3, e4, e5 = (getattr(self, f"output{k + 1}")(f[k]) for k in range(5))
            e5 = self.multifieldcrossatt(e5[:4], e5[4:])
            e4 = self.conv4(self.dec_blk4(e4 + _resize_as(e5, e4)))
            e3 = self.conv3(self.dec_blk3(e3 + _resize_as(e4, e3)))
            e2 = self.conv2(self.dec_blk2(e2 + _resize_as(e3, e2)))
            e1 = self.conv1(self.dec_blk1(e1 + _resize_as(e2, e1)))

            # Stitch the quadrants back into one H/4 map, add the global view, then upsample to H.
            y = _from_quadrants(e1[:4])
            y = self.insmask_head(y + _resize_as(e1[4:], y))
            s = shallow[i : i + 1]
            y = self.upsample1(_double(y + _resize_as(s, y)))
            y = self.upsample2(_double(y + _resize_as(s, y)))
            masks.append(torch.sigmoid(self.output(y)))
        return torch.cat(masks, dim=0)


# --------------------------------------------------------------------------------------------------
# Loading and inference.
# --------------------------------------------------------------------------------------------------


def _checkpoint_file(path: Path) -> Path:
    if path.is_file():
        return path
    if not path.is_dir():
        raise FileNotFoundError(f"no BEN2 checkpoint at {path}")
    for name in ("model.safetensors", "BEN2_Base.pth"):
        if (path / name).is_file():
            return path / name
    candidates = sorted(path.glob("*.safetensors")) or sorted(path.glob("*.pth"))
    if len(candidates) != 1:
        found = ", ".join(p.name for p in candidates) or "none"
        raise FileNotFoundError(f"expected one BEN2 checkpoint (.safetensors or .pth) in {path}, found {found}")
    return candidates[0]


def _read_state_dict(file: Path) -> dict[str, torch.Tensor]:
    if file.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(file))
    state = torch.load(file, map_location="cpu", weights_only=True)
    # The official BEN2_Base.pth wraps the weights as {"model_state_dict": ...}.
    for key in ("model_state_dict", "state_dict"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            return state[key]
    return state


def _config_args(folder: Path) -> dict:
    """Constructor arguments from config.json; the hub's own config.json holds only metadata, skipped."""
    file = folder / "config.json"
    if not file.is_file():
        return {}
    data = json.loads(file.read_text())
    accepted = set(inspect.signature(BEN2.__init__).parameters) - {"self"}
    return {k: v for k, v in data.items() if k in accepted}


def load_ben2(path: Path, **overrides) -> BEN2:
    """BEN2 from a ``.pth``/``.safetensors`` file or a folder holding one, in eval mode, fp32 on CPU."""
    path = Path(path)
    file = _checkpoint_file(path)
    args = {**_config_args(file.parent), **overrides}
    state = _read_state_dict(file)
    state = {k: v.float() if v.is_floating_point() else v for k, v in state.items()}
    # Built on the meta device so the random initialization is skipped; the checkpoint supplies all.
    with torch.device("meta"):
        model = BEN2(**args)
    model.load_state_dict(state, strict=True, assign=True)
    # The normalization constants are not in the checkpoint; make them real.
    model.mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    model.std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    return model.eval()


def predict_mask(model: BEN2, image, size: int = WORKING_SIZE, stretch: bool = True):
    """The foreground mask of a PIL image as an "L" image of the same size, as upstream's ``inference``.

    Upstream squashes the image to size x size (Lanczos), runs the network, resizes the mask back
    bilinearly, and stretches it so its minimum is 0 and maximum 255 (``stretch``; skipped when the
    mask is flat, where upstream would divide by zero), truncating to 8 bits.
    """
    from PIL import Image

    param = next(model.parameters())
    rgb = image.convert("RGB").resize((size, size), resample=Image.LANCZOS)
    x = torch.from_numpy(np.asarray(rgb, dtype=np.uint8).copy()).permute(2, 0, 1).float().div(255)
    with torch.inference_mode():
        mask = model(x.unsqueeze(0).to(device=param.device, dtype=param.dtype)).float()
        mask = F.interpolate(mask, size=(image.height, image.width), mode="bilinear")[0, 0]
        lo, hi = mask.min(), mask.max()
        if stretch and hi > lo:
            mask = (mask - lo) / (hi - lo)
        pixels = (mask * 255).cpu().numpy().astype(np.uint8)
    return Image.fromarray(pixels, mode="L")
