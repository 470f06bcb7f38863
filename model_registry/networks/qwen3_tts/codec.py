"""The Qwen3-TTS 12 Hz speech codec ("speech tokenizer"): 24 kHz audio to sixteen codes per 80 ms frame
and back. Upstream's class is ``Qwen3TTSTokenizerV2Model``; every released checkpoint carries one in
its ``speech_tokenizer/`` folder.

Encoding is Kyutai's Mimi, unchanged: a SEANet convolution stack, a sliding-window transformer, a
stride-2 convolution down to 12.5 Hz, and a split residual quantizer (one semantic codebook, 31
acoustic ones), of which only the first ``encoder_valid_num_quantizers`` (16) codes are kept.

Decoding is Qwen's own. The sixteen codes are looked up and summed in two residual groups (the
semantic first code and the fifteen acoustic ones, each group projected by a 1x1 convolution); a
causal convolution widens the sum to ``latent_dim``; a pre-transformer runs over the frames (RMSNorm,
rotary attention restricted to the last ``sliding_window`` frames, SwiGLU MLP, and a learnt per-channel
"layer scale" on both residual branches); two causal transposed convolutions, each followed by a
ConvNeXt block, upsample 4x; and a BigVGAN-like vocoder (causal convolutions and transposed
convolutions with SnakeBeta activations and dilated residual units, rates 8, 5, 4, 3) makes the
remaining 480x, so one frame is 1,920 samples. Every layer is causal: a sample depends only on its own
frame and earlier ones.

Long code sequences are decoded as upstream does, in chunks of 300 frames each seeing the 25 frames
before it, the context's audio dropped; the network sees more than 25 frames back (eight 72-frame
attention windows), so chunk boundaries differ slightly from a single pass, exactly as upstream's do.

Attribute names follow upstream's, so a released ``model.safetensors`` loads with strict=True. The
encoder is assembled from transformers' own Mimi modules under the flat names that transformers 4.57's
``MimiModel`` used (``encoder.encoder.layers``, ``encoder.encoder_transformer``, ``encoder.downsample``,
``encoder.quantizer``), which is the layout the checkpoints were saved in; transformers 5 nests them
differently and renames on load, which a strict load of this folder cannot do.

Differences from upstream that do not change results: decoder attention goes through
``scaled_dot_product_attention`` with an explicit sliding-window causal mask; rotary frequencies are
computed on the fly in float32 instead of kept in a buffer; the codebook's unused ``project_out``
(always an identity) is left out; ``encode`` takes one mono waveform already at ``input_sample_rate``
(upstream's wrapper resamples and batches with a padding mask, which for one waveform keeps every
sample); and decoding zero frames gives empty waveforms where upstream fails on an empty concatenation.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file
from torch import nn
from transformers import MimiConfig
from transformers.activations import ACT2FN
from transformers.models.mimi.modeling_mimi import (
    MimiConv1d,
    MimiEncoder,
    MimiSplitResidualVectorQuantizer,
    MimiTransformerModel,
)

__all__ = ("CODEC_DEFAULTS", "DECODER_DEFAULTS", "MODEL_TYPE", "SpeechCodec")

MODEL_TYPE = "qwen3_tts_tokenizer_12hz"

# Upstream's Qwen3TTSTokenizerV2Config defaults, for keys a config.json omits.
CODEC_DEFAULTS: dict[str, Any] = {
    "encoder_valid_num_quantizers": 16, "input_sample_rate": 24000, "output_sample_rate": 24000,
    "decode_upsample_rate": 1920, "encode_downsample_rate": 1920,
}
# Upstream's Qwen3TTSTokenizerV2DecoderConfig defaults. Upstream has no default for ``codebook_dim``
# (its decoder fails without one); 512 is what every released checkpoint says. ``head_dim`` defaults
# to hidden_size / num_attention_heads, as upstream's attention falls back to.
DECODER_DEFAULTS: dict[str, Any] = {
    "codebook_size": 2048, "codebook_dim": 512, "hidden_size": 1024, "latent_dim": 1024,
    "max_position_embeddings": 8000, "rope_theta": 10000, "num_attention_heads": 16,
    "num_key_value_heads": 16, "attention_bias": False, "sliding_window": 72, "intermediate_size": 3072,
    "hidden_act": "silu", "layer_scale_initial_scale": 0.01, "rms_norm_eps": 1e-5, "num_hidden_layers": 8,
    "num_quantizers": 16, "upsample_rates": [8, 5, 4, 3], "upsampling_ratios": [2, 2], "decoder_dim": 1536,
    "attention_dropout": 0.0,
}

# Upstream's Qwen3TTSTokenizerV2Decoder.chunked_decode defaults, which its decode always uses.
CHUNK_FRAMES = 300
CONTEXT_FRAMES = 25


# --------------------------------------------------------------------------------------------------
# Encoder: Mimi's encoding half.
# --------------------------------------------------------------------------------------------------


class CodecEncoder(nn.Module):
    """Mimi's encoder, transformer, downsampling and quantizer, under transformers 4.57's names."""

    def __init__(self, config: MimiConfig) -> None:
        super().__init__()
        self.config = config
        self.encoder = MimiEncoder(config)
        self.encoder_transformer = MimiTransformerModel(config)
        self.downsample = None
        if config.frame_rate != config.encodec_frame_rate:
            self.downsample = MimiConv1d(
                config, config.hidden_size, config.hidden_size, kernel_size=2 * config.latent_stride,
                stride=config.latent_stride, bias=False, pad_mode="replicate",
                layer_idx=len(self.encoder._conv1d_layer_names),
            )
        self.quantizer = MimiSplitResidualVectorQuantizer(config)

    def forward(self, wave: torch.Tensor, quantizers: int) -> torch.Tensor:
        """(batch, 1, samples) -> codes (batch, quantizers, frames)."""
        hidden = self.encoder(wave)
        hidden = self.encoder_transformer(hidden.transpose(1, 2)).last_hidden_state.transpose(1, 2)
        if self.downsample is not None:
            hidden = self.downsample(hidden)
        # Residual quantization is sequential, so stopping at `quantizers` gives the same first codes
        # as upstream's encoding with all of them and slicing.
        return self.quantizer.encode(hidden, quantizers).transpose(0, 1)


# --------------------------------------------------------------------------------------------------
# Decoder building blocks.
# --------------------------------------------------------------------------------------------------


class CausalConv(nn.Module):
    """A 1-D convolution padded on the left only, so no output sees a later input."""

    def __init__(self, channels_in: int, channels_out: int, kernel_size: int, dilation: int = 1,
                 stride: int = 1, groups: int = 1) -> None:
        super().__init__()
        self.conv = nn.Conv1d(channels_in, channels_out, kernel_size, stride=stride, dilation=dilation, groups=groups)
        self.stride = stride
        self.left = (kernel_size - 1) * dilation + 1 - stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Right-pad a partial last stride so it still makes an output (never for stride 1).
        return self.conv(F.pad(x, (self.left, -x.shape[-1] % self.stride)))


class CausalUpConv(nn.Module):
    """A transposed convolution whose overhang past ``stride`` samples per input is cut from the right,
    giving exactly ``stride`` outputs per input, none of them depending on a later input."""

    def __init__(self, channels_in: int, channels_out: int, kernel_size: int, stride: int) -> None:
        super().__init__()
        self.conv = nn.ConvTranspose1d(channels_in, channels_out, kernel_size, stride=stride)
        self.overhang = kernel_size - stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(x)
        return x[..., : x.shape[-1] - self.overhang]


class ConvNeXtBlock(nn.Module):
    def __init__(self, dim: int) -> None:
        super().__init__()
        self.dwconv = CausalConv(dim, dim, kernel_size=7, groups=dim)
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.pwconv1 = nn.Linear(dim, 4 * dim)
        self.act = nn.GELU()
        self.pwconv2 = nn.Linear(4 * dim, dim)
        self.gamma = nn.Parameter(torch.full((dim,), 1e-6))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.norm(self.dwconv(x).transpose(1, 2))
        y = self.gamma * self.pwconv2(self.act(self.pwconv1(y)))
        return x + y.transpose(1, 2)


class SnakeBeta(nn.Module):
    """x + sin^2(x * e^alpha) / e^beta per channel; the checkpoint stores alpha and beta as logarithms."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.alpha = nn.Parameter(torch.zeros(channels))
        self.beta = nn.Parameter(torch.zeros(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        alpha = self.alpha.exp()[None, :, None]
        inverse_beta = 1.0 / (self.beta.exp()[None, :, None] + 1e-9)
        # At the vocoder's last stages this runs on every output sample: one temporary, updated in place.
        wave = torch.sin_(x * alpha).square_()
        return torch.addcmul(x, wave, inverse_beta)


class ResidualUnit(nn.Module):
    def __init__(self, dim: int, dilation: int) -> None:
        super().__init__()
        self.act1 = SnakeBeta(dim)
        self.conv1 = CausalConv(dim, dim, kernel_size=7, dilation=dilation)
        self.act2 = SnakeBeta(dim)
        self.conv2 = CausalConv(dim, dim, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv2(self.act2(self.conv1(self.act1(x))))


class VocoderBlock(nn.Module):
    """Halve the channels, upsample by ``rate``, then three residual units dilated 1, 3 and 9."""

    def __init__(self, dim_in: int, dim_out: int, rate: int) -> None:
        super().__init__()
        units = [ResidualUnit(dim_out, dilation) for dilation in (1, 3, 9)]
        self.block = nn.ModuleList([SnakeBeta(dim_in), CausalUpConv(dim_in, dim_out, 2 * rate, rate), *units])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.block:
            x = layer(x)
        return x


# --------------------------------------------------------------------------------------------------
# Code lookup: upstream's SplitResidualVectorQuantizer, decode side only.
# --------------------------------------------------------------------------------------------------


class Codebook(nn.Module):
    """Entries kept as an EMA sum and a usage count; an entry is their quotient."""

    def __init__(self, size: int, dim: int) -> None:
        super().__init__()
        self.cluster_usage = nn.Parameter(torch.ones(size))
        self.embedding_sum = nn.Parameter(torch.zeros(size, dim))

    def lookup(self, codes: torch.Tensor) -> torch.Tensor:
        table = self.embedding_sum / self.cluster_usage.clamp(min=1e-5)[:, None]
        return F.embedding(codes, table)


class CodebookSlot(nn.Module):
    """Upstream's VectorQuantization: a holder whose only weights are its codebook's."""

    def __init__(self, size: int, dim: int) -> None:
        super().__init__()
        self._codebook = Codebook(size, dim)


class CodebookStack(nn.Module):
    def __init__(self, count: int, size: int, dim: int) -> None:
        super().__init__()
        self.layers = nn.ModuleList(CodebookSlot(size, dim) for _ in range(count))


class ResidualCodebooks(nn.Module):
    """Sum of one entry per codebook, projected from ``dim`` to ``width``. ``input_proj`` belongs to
    the encoding direction, which the decoder never runs; it is kept so the checkpoint loads strictly."""

    def __init__(self, count: int, size: int, dim: int, width: int) -> None:
        super().__init__()
        self.input_proj = nn.Conv1d(width, dim, 1, bias=False)
        self.output_proj = nn.Conv1d(dim, width, 1, bias=False)
        self.vq = CodebookStack(count, size, dim)

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """(batch, count, frames) -> (batch, width, frames)."""
        total = self.vq.layers[0]._codebook.lookup(codes[:, 0])
        for k in range(1, codes.shape[1]):
            total = total + self.vq.layers[k]._codebook.lookup(codes[:, k])
        return self.output_proj(total.transpose(1, 2))


class SplitCodebooks(nn.Module):
    """The first (semantic) code and the rest (acoustic) are looked up in separate residual groups."""

    def __init__(self, quantizers: int, size: int, width: int) -> None:
        super().__init__()
        self.rvq_first = ResidualCodebooks(1, size, width // 2, width)
        self.rvq_rest = ResidualCodebooks(quantizers - 1, size, width // 2, width)

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        return self.rvq_first.decode(codes[:, :1]) + self.rvq_rest.decode(codes[:, 1:])


# --------------------------------------------------------------------------------------------------
# The pre-transformer.
# --------------------------------------------------------------------------------------------------


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Normalized in float32 whatever the model's dtype, as upstream (Llama-style) does.
        x32 = x.float()
        x32 = x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * x32.to(x.dtype)


class LayerScale(nn.Module):
    def __init__(self, dim: int, initial: float) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.full((dim,), initial))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.scale * x


def _rotate_half(x: torch.Tensor) -> torch.Tensor:
    first, second = x.chunk(2, dim=-1)
    return torch.cat((-second, first), dim=-1)


class Attention(nn.Module):
    def __init__(self, s: dict[str, Any]) -> None:
        super().__init__()
        self.heads = int(s["num_attention_heads"])
        self.kv_heads = int(s["num_key_value_heads"])
        self.head_dim = int(s["head_dim"])
        hidden, bias = int(s["hidden_size"]), bool(s["attention_bias"])
        self.q_proj = nn.Linear(hidden, self.heads * self.head_dim, bias=bias)
        self.k_proj = nn.Linear(hidden, self.kv_heads * self.head_dim, bias=bias)
        self.v_proj = nn.Linear(hidden, self.kv_heads * self.head_dim, bias=bias)
        self.o_proj = nn.Linear(self.heads * self.head_dim, hidden, bias=bias)

    def forward(self, x: torch.Tensor, rotary: tuple[torch.Tensor, torch.Tensor], mask: torch.Tensor) -> torch.Tensor:
        batch, frames, _ = x.shape
        q = self.q_proj(x).view(batch, frames, self.heads, self.head_dim).transpose(1, 2)
        k = self.k_proj(x).view(batch, frames, self.kv_heads, self.head_dim).transpose(1, 2)
        v = self.v_proj(x).view(batch, frames, self.kv_heads, self.head_dim).transpose(1, 2)
        cos, sin = rotary
        q = q * cos + _rotate_half(q) * sin
        k = k * cos + _rotate_half(k) * sin
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=self.head_dim**-0.5,
                                             enable_gqa=self.heads != self.kv_heads)
        return self.o_proj(out.transpose(1, 2).reshape(batch, frames, -1))


class GatedMLP(nn.Module):
    def __init__(self, s: dict[str, Any]) -> None:
        super().__init__()
        hidden, inner = int(s["hidden_size"]), int(s["intermediate_size"])
        self.gate_proj = nn.Linear(hidden, inner, bias=False)
        self.up_proj = nn.Linear(hidden, inner, bias=False)
        self.down_proj = nn.Linear(inner, hidden, bias=False)
        self.act_fn = ACT2FN[s["hidden_act"]]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down_proj(self.act_fn(self.gate_proj(x)) * self.up_proj(x))


class TransformerLayer(nn.Module):
    def __init__(self, s: dict[str, Any]) -> None:
        super().__init__()
        hidden, eps, scale = int(s["hidden_size"]), float(s["rms_norm_eps"]), float(s["layer_scale_initial_scale"])
        self.self_attn = Attention(s)
        self.mlp = GatedMLP(s)
        self.input_layernorm = RMSNorm(hidden, eps)
        self.post_attention_layernorm = RMSNorm(hidden, eps)
        self.self_attn_layer_scale = LayerScale(hidden, scale)
        self.mlp_layer_scale = LayerScale(hidden, scale)

    def forward(self, x: torch.Tensor, rotary: tuple[torch.Tensor, torch.Tensor], mask: torch.Tensor) -> torch.Tensor:
        x = x + self.self_attn_layer_scale(self.self_attn(self.input_layernorm(x), rotary, mask))
        return x + self.mlp_layer_scale(self.mlp(self.post_attention_layernorm(x)))


class PreTransformer(nn.Module):
    """latent_dim -> hidden_size, the layers, RMSNorm, back to latent_dim; positions count from 0."""

    def __init__(self, s: dict[str, Any]) -> None:
        super().__init__()
        hidden, latent = int(s["hidden_size"]), int(s["latent_dim"])
        self.layers = nn.ModuleList(TransformerLayer(s) for _ in range(int(s["num_hidden_layers"])))
        self.norm = RMSNorm(hidden, float(s["rms_norm_eps"]))
        self.input_proj = nn.Linear(latent, hidden)
        self.output_proj = nn.Linear(hidden, latent)
        self.head_dim = int(s["head_dim"])
        self.rope_theta = float(s["rope_theta"])
        self.window = int(s["sliding_window"])

    def _rotary(self, frames: int, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        # Computed in float32 and only then cast, as upstream does, so half-precision models keep
        # exact angles.
        steps = torch.arange(0, self.head_dim, 2, dtype=torch.int64, device=like.device).float() / self.head_dim
        inv_freq = 1.0 / (self.rope_theta**steps)
        angles = torch.arange(frames, device=like.device).float()[:, None] * inv_freq[None, :]
        angles = torch.cat((angles, angles), dim=-1)
        return angles.cos().to(like.dtype), angles.sin().to(like.dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.input_proj(x)
        frames = x.shape[1]
        position = torch.arange(frames, device=x.device)
        behind = position[:, None] - position[None, :]
        # Each frame attends to itself and the window - 1 frames before it.
        mask = (behind >= 0) & (behind < self.window)
        rotary = self._rotary(frames, x)
        for layer in self.layers:
            x = layer(x, rotary, mask)
        return self.output_proj(self.norm(x))


class CodecDecoder(nn.Module):
    """Codes (batch, quantizers, frames) -> waveform (batch, 1, frames * total_upsample) in [-1, 1]."""

    def __init__(self, s: dict[str, Any]) -> None:
        super().__init__()
        latent, width = int(s["latent_dim"]), int(s["decoder_dim"])
        rates, ratios = [int(r) for r in s["upsample_rates"]], [int(r) for r in s["upsampling_ratios"]]
        self.quantizers = int(s["num_quantizers"])
        self.total_upsample = math.prod(rates + ratios)
        self.pre_transformer = PreTransformer(s)
        self.quantizer = SplitCodebooks(self.quantizers, int(s["codebook_size"]), int(s["codebook_dim"]))
        self.pre_conv = CausalConv(int(s["codebook_dim"]), latent, kernel_size=3)
        self.upsample = nn.ModuleList(
            nn.ModuleList([CausalUpConv(latent, latent, ratio, ratio), ConvNeXtBlock(latent)]) for ratio in ratios
        )
        vocoder: list[nn.Module] = [CausalConv(latent, width, 7)]
        vocoder += [VocoderBlock(width >> i, width >> (i + 1), rate) for i, rate in enumerate(rates)]
        vocoder += [SnakeBeta(width >> len(rates)), CausalConv(width >> len(rates), 1, 7)]
        self.decoder = nn.ModuleList(vocoder)

    def forward(self, codes: torch.Tensor) -> torch.Tensor:
        hidden = self.pre_conv(self.quantizer.decode(codes))
        hidden = self.pre_transformer(hidden.transpose(1, 2)).transpose(1, 2)
        for upconv, convnext in self.upsample:
            hidden = convnext(upconv(hidden))
        for layer in self.decoder:
            hidden = layer(hidden)
        return hidden.clamp(-1, 1)


# --------------------------------------------------------------------------------------------------
# The codec.
# --------------------------------------------------------------------------------------------------


def _decoder_settings(section: dict[str, Any]) -> dict[str, Any]:
    """The config.json's ``decoder_config`` over upstream's defaults, ``head_dim`` filled in."""
    merged = {**DECODER_DEFAULTS, **{k: v for k, v in section.items() if v is not None}}
    merged["head_dim"] = int(merged.get("head_dim") or int(merged["hidden_size"]) // int(merged["num_attention_heads"]))
    scaling = merged.get("rope_scaling")
    if isinstance(scaling, dict) and scaling.get("rope_type", scaling.get("type", "default")) != "default":
        raise ValueError(f"the 12 Hz codec decoder uses plain rotary positions, not {scaling!r}")
    return merged


def _encoder_config(section: dict[str, Any]) -> MimiConfig:
    config = MimiConfig(**section)
    config._attn_implementation = "sdpa"
    return config


class SpeechCodec(nn.Module):
    """Upstream's ``Qwen3TTSTokenizerV2Model``, built from its config.json (a dict)."""

    def __init__(self, config: dict[str, Any]) -> None:
        super().__init__()
        model_type = config.get("model_type", MODEL_TYPE)
        if model_type != MODEL_TYPE:
            raise ValueError(f"not a 12 Hz Qwen3-TTS speech tokenizer config: model_type {model_type!r}")
        top = {**CODEC_DEFAULTS, **{k: v for k, v in config.items() if k in CODEC_DEFAULTS and v is not None}}
        self.valid_quantizers = int(top["encoder_valid_num_quantizers"])
        self.decode_upsample_rate = int(top["decode_upsample_rate"])
        self.encode_downsample_rate = int(top["encode_downsample_rate"])
        self._input_rate = int(top["input_sample_rate"])
        self._output_rate = int(top["output_sample_rate"])
        self.encoder = CodecEncoder(_encoder_config(config.get("encoder_config") or {}))
        self.decoder = CodecDecoder(_decoder_settings(config.get("decoder_config") or {}))

    @property
    def input_sample_rate(self) -> int:
        return self._input_rate

    @property
    def output_sample_rate(self) -> int:
        return self._output_rate

    @classmethod
    def from_pretrained(cls, folder: Path, device: str | torch.device = "cpu",
                        dtype: torch.dtype = torch.float32) -> SpeechCodec:
        """The codec in ``folder`` (``config.json`` and ``model.safetensors``, the released
        ``speech_tokenizer/`` layout), loaded strictly, in eval mode; ValueError naming the keys or
        shapes that do not fit."""
        folder = Path(folder)
        config = json.loads((folder / "config.json").read_text())
        weights = load_file(str(folder / "model.safetensors"))
        # Built where it will run, so the throwaway random initialization is quick on a GPU too.
        with torch.device(device):
            model = cls(config)
        expected = model.state_dict()
        missing = sorted(expected.keys() - weights.keys())
        unexpected = sorted(weights.keys() - expected.keys())
        if missing or unexpected:
            raise ValueError(
                f"{folder / 'model.safetensors'} does not fit its config.json: "
                f"missing {missing[:5]}{' ...' if len(missing) > 5 else ''}, "
                f"unexpected {unexpected[:5]}{' ...' if len(unexpected) > 5 else ''}"
            )
        wrong = [f"{key} {tuple(weights[key].shape)} (expected {tuple(value.shape)})"
                 for key, value in expected.items() if weights[key].shape != value.shape]
        if wrong:
            raise ValueError(f"{folder / 'model.safetensors'} has the wrong shapes for its config.json: "
                             f"{', '.join(wrong[:5])}")
        model.load_state_dict(weights, strict=True)
        return model.to(device=device, dtype=dtype).eval()

    @torch.inference_mode()
    def encode(self, waveform: np.ndarray | torch.Tensor) -> torch.Tensor:
        """Mono audio at ``input_sample_rate`` (1-D) -> codes (frames, encoder_valid_num_quantizers),
        one frame per started ``encode_downsample_rate`` samples, on the model's device."""
        parameter = next(self.parameters())
        # Through float32 first, as upstream's feature extractor hands the model float32 samples.
        if torch.is_tensor(waveform):
            wave = waveform.float()
        else:
            wave = torch.tensor(np.asarray(waveform, dtype=np.float32))
        if wave.ndim != 1:
            raise ValueError(f"encode takes mono audio (one dimension), not shape {tuple(wave.shape)}")
        wave = wave.to(device=parameter.device, dtype=parameter.dtype)
        codes = self.encoder(wave[None, None], self.valid_quantizers)[0]
        # Upstream keeps ceil(samples / encode_downsample_rate) frames of the encoder's output.
        frames = -(-wave.shape[0] // self.encode_downsample_rate)
        return codes[:, :frames].transpose(0, 1).long()

    @torch.inference_mode()
    def decode(self, codes: torch.Tensor, chunk_size: int = CHUNK_FRAMES,
               left_context_size: int = CONTEXT_FRAMES) -> list[torch.Tensor]:
        """Codes (batch, frames, quantizers), each row padded with -1 after its end -> one 1-D waveform
        per row at ``output_sample_rate``, ``decode_upsample_rate`` samples per frame.

        As upstream: a row's length is its count of first codes that are not -1; padding decodes as
        code 0 before being cut; frames go through the network ``chunk_size`` at a time, each chunk
        preceded by up to ``left_context_size`` frames whose audio is dropped."""
        if codes.ndim != 3 or codes.shape[-1] != self.decoder.quantizers:
            raise ValueError(
                f"decode takes codes (batch, frames, {self.decoder.quantizers}), not shape {tuple(codes.shape)}"
            )
        codes = codes.to(device=next(self.parameters()).device, dtype=torch.long)
        lengths = ((codes[..., 0] > -1).sum(1) * self.decode_upsample_rate).tolist()
        codes = codes.clamp(min=0).transpose(1, 2)
        frames = codes.shape[-1]
        pieces = []
        for start in range(0, frames, chunk_size):
            context = min(left_context_size, start)
            wave = self.decoder(codes[..., start - context : start + chunk_size])
            pieces.append(wave[..., context * self.decoder.total_upsample :])
        if not pieces:
            return [codes.new_zeros(0, dtype=next(self.parameters()).dtype) for _ in lengths]
        waves = torch.cat(pieces, dim=-1)[:, 0]
        return [wave[:length] for wave, length in zip(waves, lengths)]
