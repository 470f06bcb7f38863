"""CAM++ (3D-Speaker's "context-aware masking" x-vector network), S3Gen's speaker encoder in Chatterbox.

S3Gen conditions its token-to-mel flow on a 192-dim speaker vector that this network computes from the
16 kHz reference clip. The clip becomes 80 Kaldi log-mel filterbanks (25 ms frames every 10 ms), each
bin minus its mean over the clip, and then:

- ``head`` (upstream's FCM): a small 2-D ResNet over (frequency, time) with 32 channels, two layers of
  two residual blocks and a last convolution, each stage halving frequency only; 80 bins end as 10,
  folded into 32 * 10 = 320 channels per frame.
- ``xvector``: a stride-2 TDNN to 128 channels at half the frame rate, then three densely connected
  blocks (12, 24 and 16 layers, dilation 1, 2, 2) where every layer appends 32 channels and a
  transition halves the width after each block (128 -> 512 -> 256 -> 1024 -> 512 -> 1024 -> 512).
  Each dense layer's output is gated per channel by a sigmoid of the clip's mean plus the mean of its
  100-frame segment ("context-aware masking"). Mean and standard deviation over time (1024 values)
  go through a 1x1 projection to 192 and a batch norm without affine weights.

Module attributes are named as upstream names them (including the ``tdnnd<i>``, ``block<i>``,
``transit<i>`` and ``nonlinear.batchnorm`` names its ``nn.Sequential`` builders produce), so the
weights under ``speaker_encoder.`` in Chatterbox's ``s3gen.safetensors`` load with ``strict=True``
through :func:`load_campplus`. ``CAMPPlus()`` is the released network (6,848,544 parameters); smaller
arguments build tiny test models.

Differences from upstream, none of which changes the released network's output:

- The Kaldi filterbank is written here (:func:`kaldi_fbank`) instead of calling torchaudio's
  ``compliance.kaldi.fbank``, for exactly the options upstream uses (only ``num_mel_bins=80``; all
  else torchaudio's defaults), with the same float32 arithmetic for the mel weights.
- Only the released configuration is built: batch norm then ReLU everywhere, segment-level output.
  Upstream's ``config_str``, ``output_level="frame"`` and ``memory_efficient`` (activation
  checkpointing for training) are not offered, nor its kaiming initialization (weights are loaded).
- :meth:`CAMPPlus.embed` takes one clip, as S3Gen's ``embed_ref`` does in practice. Upstream's batch
  path zero-pads the normalized features of shorter clips, which changes their embeddings.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

__all__ = ("CAMPPlus", "SAMPLE_RATE", "kaldi_fbank", "load_campplus")

SAMPLE_RATE = 16_000

# torchaudio's Kaldi defaults at 16 kHz, which upstream relies on by passing only num_mel_bins.
_FRAME_LENGTH = 400  # 25 ms
_FRAME_SHIFT = 160  # 10 ms
_FFT_SIZE = 512  # the frame zero-padded to the next power of two (round_to_power_of_two)
_PREEMPHASIS = 0.97
_LOW_HZ = 20.0
_HIGH_HZ = SAMPLE_RATE / 2  # high_freq=0 means "at Nyquist"
_POVEY_EXPONENT = 0.85
# Kaldi floors mel energies at float32's epsilon before the log, whatever the working dtype.
_LOG_FLOOR = float(torch.finfo(torch.float32).eps)

# CAMLayer's segment pooling length, in frames after the stride-2 TDNN.
_SEGMENT_FRAMES = 100


# --------------------------------------------------------------------------------------------------
# Kaldi filterbank front end.
# --------------------------------------------------------------------------------------------------


def _kaldi_mel_bank(num_mel_bins: int) -> torch.Tensor:
    """(num_mel_bins, FFT_SIZE // 2) float32 triangles, evenly spaced on Kaldi's mel scale
    (1127 ln(1 + hz / 700)) from 20 Hz to Nyquist.

    Kaldi draws the triangles in the mel domain (not Hz) and leaves them unnormalized; the Nyquist
    FFT bin gets no weight, so it is left out here and the caller drops it from the spectrum.

    The arithmetic is float32 in torchaudio's order on purpose: the weights were trained on features
    from torchaudio, and float32 mels near 2840 are coarse enough that exact float64 triangles move
    individual weights by up to 1e-3 relative (3e-4 in the log energies).
    """
    low = 1127.0 * math.log(1.0 + _LOW_HZ / 700.0)
    high = 1127.0 * math.log(1.0 + _HIGH_HZ / 700.0)
    step = (high - low) / (num_mel_bins + 1)
    edges = low + torch.arange(num_mel_bins + 2, dtype=torch.float32) * step
    left, center, right = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    fft_hz = (SAMPLE_RATE / _FFT_SIZE) * torch.arange(_FFT_SIZE // 2, dtype=torch.float32)
    fft_mels = (1127.0 * (1.0 + fft_hz / 700.0).log())[None, :]
    rising = (fft_mels - left) / (center - left)
    falling = (right - fft_mels) / (right - center)
    return torch.minimum(rising, falling).clamp_min(0.0)


def kaldi_fbank(wave_16k: torch.Tensor, num_mel_bins: int = 80) -> torch.Tensor:
    """(frames, num_mel_bins) Kaldi log-mel filterbank of mono 16 kHz audio, as torchaudio's
    ``compliance.kaldi.fbank(wave[None], num_mel_bins=...)`` computes it.

    Whole frames only (snip_edges): ``1 + (samples - 400) // 160`` of them. Per frame: the DC offset
    is removed, pre-emphasis 0.97 applied (the first sample repeats as its own predecessor), a Povey
    window (Hann to the power 0.85), a 512-point power spectrum, mel weights, and the log floored at
    float32's epsilon. There is no dither (torchaudio's default, unlike Kaldi's own 1.0), so the result
    is deterministic; Kaldi's energy floor only touches the log-energy column, which fbank drops by
    default, so it has nothing to act on here.
    """
    wave = torch.as_tensor(wave_16k)
    if wave.ndim != 1:
        raise ValueError(f"kaldi_fbank takes mono audio of shape (samples,), not {tuple(wave.shape)}")
    if wave.shape[0] < _FRAME_LENGTH:
        raise ValueError(f"need at least {_FRAME_LENGTH} samples (25 ms at 16 kHz), got {wave.shape[0]}")
    if not wave.is_floating_point():
        wave = wave.float()

    frames = wave.unfold(0, _FRAME_LENGTH, _FRAME_SHIFT)
    frames = frames - frames.mean(dim=1, keepdim=True)
    previous = torch.cat([frames[:, :1], frames[:, :-1]], dim=1)
    frames = frames - _PREEMPHASIS * previous
    window = torch.hann_window(_FRAME_LENGTH, periodic=False, dtype=wave.dtype, device=wave.device)
    frames = frames * window.pow(_POVEY_EXPONENT)

    power = torch.fft.rfft(frames, n=_FFT_SIZE).abs().pow(2)[:, : _FFT_SIZE // 2]
    bank = _kaldi_mel_bank(num_mel_bins).to(device=wave.device, dtype=wave.dtype)
    return (power @ bank.T).clamp_min(_LOG_FLOOR).log()


# --------------------------------------------------------------------------------------------------
# Network. Class names are this project's; attribute names are upstream's (they are the weight keys).
# --------------------------------------------------------------------------------------------------


class _BatchNormReLU(nn.Module):
    """Upstream's ``get_nonlinear("batchnorm-relu")``, whose weights sit under ``batchnorm.``; with
    ``affine=False, relu=False`` its ``get_nonlinear("batchnorm_")`` for the embedding."""

    def __init__(self, channels: int, affine: bool = True, relu: bool = True):
        super().__init__()
        self.batchnorm = nn.BatchNorm1d(channels, affine=affine)
        self.relu = relu

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.batchnorm(x)
        return F.relu(x) if self.relu else x


class _ResidualBlock2d(nn.Module):
    """Two 3x3 convolutions with a skip; a stride, when given, halves frequency and keeps time."""

    def __init__(self, in_channels: int, channels: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, channels, 3, stride=(stride, 1), padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)
        if stride != 1 or in_channels != channels:
            # Keys shortcut.0 / shortcut.1, as upstream's nn.Sequential numbers them.
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_channels, channels, 1, stride=(stride, 1), bias=False),
                nn.BatchNorm2d(channels),
            )
        else:
            self.shortcut = nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class _FrequencyResNet(nn.Module):
    """Upstream's FCM head: (B, F, T) filterbanks -> (B, channels * F / 8, T) frame features."""

    def __init__(self, feat_dim: int, channels: int):
        super().__init__()
        self.conv1 = nn.Conv2d(1, channels, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        # Keys layer<n>.0 / layer<n>.1: the first block of each layer halves frequency.
        self.layer1 = nn.Sequential(_ResidualBlock2d(channels, channels, 2), _ResidualBlock2d(channels, channels, 1))
        self.layer2 = nn.Sequential(_ResidualBlock2d(channels, channels, 2), _ResidualBlock2d(channels, channels, 1))
        self.conv2 = nn.Conv2d(channels, channels, 3, stride=(2, 1), padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)
        bins = feat_dim
        for _ in range(3):  # three stride-2 convolutions with padding 1
            bins = (bins + 1) // 2
        self.out_channels = channels * bins

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x.unsqueeze(1))))
        out = self.layer2(self.layer1(out))
        out = F.relu(self.bn2(self.conv2(out)))
        return out.flatten(1, 2)  # channel-major: channel c, bin f -> row c * bins + f


class _ContextAwareMask(nn.Module):
    """Upstream's CAMLayer: a dilated convolution whose output channels are gated by what the whole
    clip and the local 100-frame segment look like on average."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, dilation: int, reduction: int = 2):
        super().__init__()
        padding = (kernel_size - 1) // 2 * dilation
        self.linear_local = nn.Conv1d(
            in_channels, out_channels, kernel_size, padding=padding, dilation=dilation, bias=False
        )
        self.linear1 = nn.Conv1d(in_channels, in_channels // reduction, 1)
        self.linear2 = nn.Conv1d(in_channels // reduction, out_channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        frames = x.shape[-1]
        # ceil_mode keeps a last, shorter segment and averages it over the frames it really has.
        segments = F.avg_pool1d(x, _SEGMENT_FRAMES, _SEGMENT_FRAMES, ceil_mode=True)
        segments = segments.repeat_interleave(_SEGMENT_FRAMES, dim=-1)[..., :frames]
        context = x.mean(dim=-1, keepdim=True) + segments
        gate = torch.sigmoid(self.linear2(F.relu(self.linear1(context))))
        return self.linear_local(x) * gate


class _DenseLayer(nn.Module):
    """Upstream's CAMDenseTDNNLayer: a 1x1 bottleneck to ``bn_channels``, then the masked convolution
    producing ``growth_rate`` new channels."""

    def __init__(self, in_channels: int, growth_rate: int, bn_channels: int, kernel_size: int, dilation: int):
        super().__init__()
        self.nonlinear1 = _BatchNormReLU(in_channels)
        self.linear1 = nn.Conv1d(in_channels, bn_channels, 1, bias=False)
        self.nonlinear2 = _BatchNormReLU(bn_channels)
        self.cam_layer = _ContextAwareMask(bn_channels, growth_rate, kernel_size, dilation)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.cam_layer(self.nonlinear2(self.linear1(self.nonlinear1(x))))


class _DenseBlock(nn.Module):
    """Layers ``tdnnd1..N``, each seeing every earlier output concatenated onto the block's input."""

    def __init__(self, layers: int, in_channels: int, growth_rate: int, bn_channels: int, dilation: int):
        super().__init__()
        for i in range(layers):
            layer = _DenseLayer(in_channels + i * growth_rate, growth_rate, bn_channels, 3, dilation)
            self.add_module(f"tdnnd{i + 1}", layer)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.children():
            x = torch.cat([x, layer(x)], dim=1)
        return x


class _TDNN(nn.Module):
    """Upstream's TDNNLayer as CAM++ uses it: kernel 5, stride 2 (halving the frame rate)."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.linear = nn.Conv1d(in_channels, out_channels, 5, stride=2, padding=2, bias=False)
        self.nonlinear = _BatchNormReLU(out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.nonlinear(self.linear(x))


class _Transit(nn.Module):
    """Upstream's TransitLayer: normalize, then a 1x1 convolution halving the width."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.nonlinear = _BatchNormReLU(in_channels)
        self.linear = nn.Conv1d(in_channels, out_channels, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(self.nonlinear(x))


class _Embedding(nn.Module):
    """Upstream's DenseLayer on pooled statistics: a 1x1 projection and a batch norm without affine."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.linear = nn.Conv1d(in_channels, out_channels, 1, bias=False)
        self.nonlinear = _BatchNormReLU(out_channels, affine=False, relu=False)

    def forward(self, stats: torch.Tensor) -> torch.Tensor:
        return self.nonlinear(self.linear(stats.unsqueeze(-1)).squeeze(-1))


class _XVector(nn.Module):
    """TDNN, dense blocks with transitions, statistics pooling and the embedding projection.

    Upstream builds this as an ``nn.Sequential`` of named children; the names are kept, the pooling
    (which has no weights) happens in :meth:`forward`.
    """

    def __init__(
        self,
        in_channels: int,
        init_channels: int,
        growth_rate: int,
        bn_size: int,
        block_layers: Iterable[int],
        block_dilations: Iterable[int],
        embedding_size: int,
    ):
        super().__init__()
        self.tdnn = _TDNN(in_channels, init_channels)
        channels = init_channels
        self.num_blocks = 0
        for i, (layers, dilation) in enumerate(zip(block_layers, block_dilations, strict=True), start=1):
            self.add_module(f"block{i}", _DenseBlock(layers, channels, growth_rate, bn_size * growth_rate, dilation))
            channels += layers * growth_rate
            self.add_module(f"transit{i}", _Transit(channels, channels // 2))
            channels //= 2
            self.num_blocks = i
        self.out_nonlinear = _BatchNormReLU(channels)
        self.dense = _Embedding(2 * channels, embedding_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.tdnn(x)
        for i in range(1, self.num_blocks + 1):
            x = getattr(self, f"transit{i}")(getattr(self, f"block{i}")(x))
        x = self.out_nonlinear(x)
        # Unbiased standard deviation, as upstream's statistics pooling (which needs >= 2 frames).
        stats = torch.cat([x.mean(dim=-1), x.std(dim=-1)], dim=-1)
        return self.dense(stats)


class CAMPPlus(nn.Module):
    """CAM++ speaker encoder; the default arguments are the geometry S3Gen uses."""

    def __init__(
        self,
        feat_dim: int = 80,
        embedding_size: int = 192,
        growth_rate: int = 32,
        bn_size: int = 4,
        init_channels: int = 128,
        m_channels: int = 32,
        block_layers: tuple[int, ...] = (12, 24, 16),
        block_dilations: tuple[int, ...] = (1, 2, 2),
    ):
        super().__init__()
        self.feat_dim = feat_dim
        self.embedding_size = embedding_size
        self.head = _FrequencyResNet(feat_dim, m_channels)
        self.xvector = _XVector(
            self.head.out_channels,
            init_channels,
            growth_rate,
            bn_size,
            block_layers,
            block_dilations,
            embedding_size,
        )

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """(B, T, feat_dim) mean-normalized filterbanks -> (B, embedding_size)."""
        return self.xvector(self.head(features.transpose(1, 2)))

    @torch.no_grad()
    def embed(self, audio_16k: np.ndarray | torch.Tensor) -> torch.Tensor:
        """The (embedding_size,) speaker vector of one mono 16 kHz clip (float samples in [-1, 1]).

        As S3Gen's ``embed_ref``: float32 Kaldi filterbanks, minus their mean over the clip, through
        the network. Call it in eval mode; batch norm in training mode cannot normalize one clip.
        """
        wave = torch.as_tensor(audio_16k)
        if wave.ndim == 2 and wave.shape[0] == 1:
            wave = wave[0]
        parameter = next(self.parameters())
        wave = wave.to(device=parameter.device, dtype=torch.float32)
        features = kaldi_fbank(wave, num_mel_bins=self.feat_dim)
        features = features - features.mean(dim=0, keepdim=True)
        return self(features.unsqueeze(0).to(parameter.dtype))[0]


def _listed(keys: list[str], limit: int = 8) -> str:
    shown = ", ".join(keys[:limit])
    return shown if len(keys) <= limit else f"{shown} and {len(keys) - limit} more"


def load_campplus(
    state_dict: Mapping[str, torch.Tensor],
    prefix: str = "speaker_encoder.",
    dtype: torch.dtype = torch.float32,
    **geometry,
) -> CAMPPlus:
    """CAMPPlus in eval mode from the entries of ``state_dict`` under ``prefix`` (S3Gen's checkpoint
    keeps it under ``speaker_encoder.``; other entries are ignored), floating weights cast to ``dtype``.

    Every weight and running statistic must be present and nothing else under the prefix; a
    ``ValueError`` names what is missing or unexpected. Batch norms' ``num_batches_tracked`` counters
    may be absent (they only steer training) and then start at zero.
    """
    own = {key[len(prefix) :]: value for key, value in state_dict.items() if key.startswith(prefix)}
    # Built on the meta device: the checkpoint supplies every tensor, so random init would be wasted.
    with torch.device("meta"):
        model = CAMPPlus(**geometry)
    expected = model.state_dict().keys()
    for key in expected:
        if key.endswith(".num_batches_tracked") and key not in own:
            own[key] = torch.zeros((), dtype=torch.long)
    missing = sorted(expected - own.keys())
    unexpected = sorted(own.keys() - expected)
    if missing or unexpected:
        problems = []
        if missing:
            problems.append(f"missing {len(missing)}: {_listed([prefix + k for k in missing])}")
        if unexpected:
            problems.append(f"unexpected {len(unexpected)}: {_listed([prefix + k for k in unexpected])}")
        raise ValueError(f"not a CAMPPlus state dict under {prefix!r} ({'; '.join(problems)})")
    own = {k: v.to(dtype) if v.is_floating_point() else v for k, v in own.items()}
    model.load_state_dict(own, strict=True, assign=True)
    return model.eval()
