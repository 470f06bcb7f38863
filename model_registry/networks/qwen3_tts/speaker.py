"""The Qwen3-TTS speaker encoder: an ECAPA-TDNN (Desplanques et al., 2020) that turns a reference
recording into the one vector the voice-clone ("Base") checkpoints condition the talker on.

The network reads a 24 kHz log-mel spectrogram (128 Slaney mels up to 12 kHz, 1024-point frames every
256 samples) and runs: a dilated 1-D convolution; SE-Res2Net blocks (a 1x1 convolution, a Res2Net
stage whose channel groups each see the previous group's output, another 1x1 convolution, and a
squeeze-and-excitation gate, around a residual); a convolution over all SE-Res2Net outputs stacked
("multi-layer feature aggregation"); attentive statistics pooling (a softmax over time per channel,
conditioned on the utterance's own mean and deviation, gives a weighted mean and deviation); and a
1x1 convolution down to ``enc_dim``. Every time convolution pads by reflection, as upstream's do.

Attribute names follow upstream's ``Qwen3TTSSpeakerEncoder``, so the Base checkpoints' weights under
``speaker_encoder.`` load with strict=True once the prefix is stripped.

Differences from upstream that do not change results: attentive pooling skips upstream's padding
mask, which is always all-true there (every utterance in a batch is taken at full length); the 1x1
convolutions over a single pooled step are declared without reflect padding, which a 1x1 kernel never
uses; the mel front end does not print warnings for samples outside [-1, 1]; and audio too short for
the reflect padding is refused with a clear error instead of failing inside ``F.pad``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from model_registry.networks.mel import mel_filters

__all__ = ("SAMPLE_RATE", "SPEAKER_DEFAULTS", "SpeakerEncoder", "speaker_mels")

# Upstream's Qwen3TTSSpeakerEncoderConfig defaults (its constructor's, which say enc_dim 1024 where
# its docstring says 192), for keys a config.json omits.
SPEAKER_DEFAULTS: dict[str, Any] = {
    "mel_dim": 128, "enc_dim": 1024, "enc_channels": [512, 512, 512, 512, 1536],
    "enc_kernel_sizes": [5, 3, 3, 3, 1], "enc_dilations": [1, 2, 3, 4, 1], "enc_attention_channels": 128,
    "enc_res2net_scale": 8, "enc_se_channels": 128, "sample_rate": 24000,
}

# The front end upstream's extract_speaker_embedding fixes, whatever the config says.
SAMPLE_RATE = 24000
_N_FFT = 1024
_HOP = 256
_N_MELS = 128
_FMAX = 12000.0
# Reflect-padding each side by (n_fft - hop) / 2 and framing without centring gives exactly
# samples // hop frames, each centred half a hop after its hop boundary.
_EDGE = (_N_FFT - _HOP) // 2


def speaker_mels(audio: np.ndarray, device: torch.device | str | None = None) -> torch.Tensor:
    """Mono float32 audio at 24 kHz -> (1, frames, 128) float32 natural-log mel magnitudes, the
    encoder's input; ``frames`` is ``len(audio) // 256``."""
    wave = torch.as_tensor(np.asarray(audio, dtype=np.float32), device=device)
    if wave.ndim != 1:
        raise ValueError(f"speaker_mels takes mono audio (one dimension), not shape {tuple(wave.shape)}")
    if wave.shape[0] <= _EDGE:
        raise ValueError(f"audio of {wave.shape[0]} samples is too short for a speaker embedding")
    wave = F.pad(wave[None, None], (_EDGE, _EDGE), mode="reflect")[0]
    window = torch.hann_window(_N_FFT, device=wave.device)
    spectrum = torch.stft(wave, _N_FFT, hop_length=_HOP, win_length=_N_FFT, window=window, center=False,
                          return_complex=True)
    # The 1e-9 under the root is part of the features the encoder was trained on: it lifts silent
    # bins to ~3e-5, above the log's 1e-5 floor.
    magnitude = torch.sqrt(spectrum.real.square() + spectrum.imag.square() + 1e-9)
    filters = torch.from_numpy(mel_filters(SAMPLE_RATE, _N_FFT, _N_MELS, fmin=0.0, fmax=_FMAX)).to(wave.device)
    mel = torch.matmul(filters, magnitude)
    return torch.log(mel.clamp_min(1e-5)).transpose(1, 2)


class _TimeDelayBlock(nn.Module):
    """A dilated convolution over time, padded by reflection to keep the length, then ReLU."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, dilation: int):
        super().__init__()
        self.conv = nn.Conv1d(in_channels, out_channels, kernel_size, dilation=dilation, padding="same",
                              padding_mode="reflect")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.conv(x))


class _Res2Net(nn.Module):
    """Channels split into ``scale`` groups: the first passes through, each later one is convolved
    after adding the previous group's output, so receptive fields grow group by group."""

    def __init__(self, channels: int, scale: int, kernel_size: int, dilation: int):
        super().__init__()
        self.scale = scale
        width = channels // scale
        self.blocks = nn.ModuleList(_TimeDelayBlock(width, width, kernel_size, dilation) for _ in range(scale - 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        groups = torch.chunk(x, self.scale, dim=1)
        outputs = [groups[0]]
        previous = None
        for block, group in zip(self.blocks, groups[1:]):
            previous = block(group if previous is None else group + previous)
            outputs.append(previous)
        return torch.cat(outputs, dim=1)


class _SqueezeExcitation(nn.Module):
    """Channel gates in (0, 1) computed from the time-averaged channels."""

    def __init__(self, channels: int, bottleneck: int):
        super().__init__()
        self.conv1 = nn.Conv1d(channels, bottleneck, 1)
        self.conv2 = nn.Conv1d(bottleneck, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate = torch.sigmoid(self.conv2(F.relu(self.conv1(x.mean(dim=2, keepdim=True)))))
        return x * gate


class _SERes2NetBlock(nn.Module):
    def __init__(self, channels: int, scale: int, se_channels: int, kernel_size: int, dilation: int):
        super().__init__()
        self.tdnn1 = _TimeDelayBlock(channels, channels, 1, 1)
        self.res2net_block = _Res2Net(channels, scale, kernel_size, dilation)
        self.tdnn2 = _TimeDelayBlock(channels, channels, 1, 1)
        self.se_block = _SqueezeExcitation(channels, se_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.se_block(self.tdnn2(self.res2net_block(self.tdnn1(x))))


def _weighted_statistics(x: torch.Tensor, weights: torch.Tensor, eps: float = 1e-12):
    """Per-channel mean and standard deviation over time under weights that sum to 1 along time."""
    mean = (weights * x).sum(dim=2)
    variance = (weights * (x - mean.unsqueeze(2)).square()).sum(dim=2)
    return mean, variance.clamp_min(eps).sqrt()


class _AttentiveStatisticsPooling(nn.Module):
    """(B, C, T) -> (B, 2C, 1): a mean and a deviation per channel under learned attention over time."""

    def __init__(self, channels: int, attention_channels: int):
        super().__init__()
        # The attention sees each frame beside the whole utterance's mean and deviation, hence 3C in.
        self.tdnn = _TimeDelayBlock(channels * 3, attention_channels, 1, 1)
        self.conv = nn.Conv1d(attention_channels, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        frames = x.shape[2]
        uniform = x.new_full((x.shape[0], 1, frames), 1.0 / frames)
        mean, std = _weighted_statistics(x, uniform)
        context = torch.cat([x, mean.unsqueeze(2).expand_as(x), std.unsqueeze(2).expand_as(x)], dim=1)
        attention = torch.softmax(self.conv(torch.tanh(self.tdnn(context))), dim=2)
        mean, std = _weighted_statistics(x, attention)
        return torch.cat([mean, std], dim=1).unsqueeze(2)


def _reflect_reach(kernel_size: int, dilation: int) -> int:
    """The larger side of a 'same' padding; reflection needs more input frames than this."""
    total = dilation * (kernel_size - 1)
    return total - total // 2


class SpeakerEncoder(nn.Module):
    """ECAPA-TDNN speaker encoder: (batch, frames, mel_dim) log-mels -> (batch, enc_dim) embeddings.

    Built from the checkpoint's ``speaker_encoder_config`` (a dict; missing keys take upstream's
    defaults, unknown keys are ignored).
    """

    def __init__(self, config: dict[str, Any] | None = None):
        super().__init__()
        merged = {**SPEAKER_DEFAULTS, **{k: v for k, v in (config or {}).items() if v is not None}}
        channels = [int(c) for c in merged["enc_channels"]]
        kernels = [int(k) for k in merged["enc_kernel_sizes"]]
        dilations = [int(d) for d in merged["enc_dilations"]]
        scale = int(merged["enc_res2net_scale"])
        _check_shape(channels, kernels, dilations, scale)
        self.channels = channels
        self.sample_rate = int(merged["sample_rate"])

        self.blocks = nn.ModuleList([_TimeDelayBlock(int(merged["mel_dim"]), channels[0], kernels[0], dilations[0])])
        for i in range(1, len(channels) - 1):
            self.blocks.append(
                _SERes2NetBlock(channels[i], scale, int(merged["enc_se_channels"]), kernels[i], dilations[i])
            )
        # Upstream declares the aggregation's input as enc_channels[-1]: the SE-Res2Net outputs stacked
        # must add up to it (512 * 3 = 1536 by default), which _check_shape enforces.
        self.mfa = _TimeDelayBlock(channels[-1], channels[-1], kernels[-1], dilations[-1])
        self.asp = _AttentiveStatisticsPooling(channels[-1], int(merged["enc_attention_channels"]))
        self.fc = nn.Conv1d(channels[-1] * 2, int(merged["enc_dim"]), 1)

        self.min_frames = 1 + max(_reflect_reach(k, d) for k, d in zip(kernels, dilations))

    @property
    def min_samples(self) -> int:
        """The shortest 24 kHz recording :meth:`embed` accepts (about 53 ms at the default config)."""
        return max(self.min_frames * _HOP, _EDGE + 1)

    def forward(self, mels: torch.Tensor) -> torch.Tensor:
        x = mels.transpose(1, 2)
        stacked = []
        for i, block in enumerate(self.blocks):
            x = block(x)
            if i > 0:  # the first convolution's output feeds the next block but not the aggregation
                stacked.append(x)
        x = self.mfa(torch.cat(stacked, dim=1))
        return self.fc(self.asp(x)).squeeze(2)

    @torch.inference_mode()
    def embed(self, audio_24k: np.ndarray) -> torch.Tensor:
        """The (enc_dim,) speaker embedding of one mono float32 recording at 24 kHz, on the module's
        device and in its dtype. The mels are computed in float32 on that device (as upstream, which
        computes them in float32 and casts before the encoder)."""
        if len(audio_24k) < self.min_samples:
            raise ValueError(
                f"reference audio of {len(audio_24k)} samples is too short for a speaker embedding; "
                f"it needs at least {self.min_samples} at {SAMPLE_RATE} Hz"
            )
        parameter = next(self.parameters())
        mels = speaker_mels(audio_24k, device=parameter.device)
        return self(mels.to(parameter.dtype))[0]

    @classmethod
    def from_state_dict(
        cls, config: dict[str, Any] | None, weights: dict[str, torch.Tensor], prefix: str = "speaker_encoder."
    ) -> SpeakerEncoder:
        """An encoder holding the ``prefix``-ed entries of ``weights`` (a whole checkpoint's tensors),
        loaded strictly; ValueError naming the keys or shapes that do not fit."""
        own = {key[len(prefix):]: value for key, value in weights.items() if key.startswith(prefix)}
        model = cls(config)
        expected = model.state_dict()
        missing = sorted(expected.keys() - own.keys())
        unexpected = sorted(own.keys() - expected.keys())
        if missing or unexpected:
            raise ValueError(
                f"speaker encoder weights under {prefix!r} do not fit the config: "
                f"missing {_some(missing, prefix)}, unexpected {_some(unexpected, prefix)}"
            )
        wrong = [
            f"{prefix}{key} {tuple(own[key].shape)} (expected {tuple(value.shape)})"
            for key, value in expected.items()
            if own[key].shape != value.shape
        ]
        if wrong:
            raise ValueError(f"speaker encoder weights have the wrong shapes for the config: {', '.join(wrong[:5])}")
        model.load_state_dict(own, strict=True)
        return model


def _some(keys: list[str], prefix: str, shown: int = 5) -> str:
    named = ", ".join(prefix + key for key in keys[:shown]) or "none"
    return named if len(keys) <= shown else f"{named} and {len(keys) - shown} more"


def _check_shape(channels: list[int], kernels: list[int], dilations: list[int], scale: int) -> None:
    """Refuse configs upstream's network cannot run, at construction rather than mid-forward."""
    if not len(channels) == len(kernels) == len(dilations):
        raise ValueError("enc_channels, enc_kernel_sizes and enc_dilations must have the same length")
    if len(channels) < 3:
        raise ValueError("enc_channels needs at least three entries: input convolution, SE-Res2Net blocks, aggregation")
    middle = channels[1:-1]
    # Each SE-Res2Net block adds its input back (no projection), so it keeps the previous width.
    if any(width != channels[0] for width in middle):
        raise ValueError(f"every SE-Res2Net width must equal the first convolution's ({channels[0]}): {channels}")
    if sum(middle) != channels[-1]:
        raise ValueError(f"enc_channels[-1] must equal the SE-Res2Net widths summed ({sum(middle)}): {channels}")
    if any(width % scale for width in middle):
        raise ValueError(f"SE-Res2Net widths must be divisible by enc_res2net_scale ({scale}): {channels}")
