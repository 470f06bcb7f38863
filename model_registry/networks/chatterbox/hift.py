"""S3Gen's vocoder: HiFT (CosyVoice 2's ``HiFTGenerator``, after HiFTNet: a neural source filter
feeding an iSTFTNet), an 80-bin mel at 50 Hz -> a 24 kHz waveform.

A small convolutional net (:class:`ConvRNNF0Predictor`) reads the pitch of every mel frame. The pitch,
held for the 480 samples of its frame, drives a harmonic-plus-noise source: a sine at F0 and its 8
overtones (random start phases, the fundamental's at 0), silenced where the pitch is at or below
10 Hz, plus Gaussian noise (std 0.003 where voiced, 0.1 / 3 where not), folded by a linear layer and
a tanh into one excitation signal. The mel is upsampled by 8, 5 and 3 through transposed
convolutions; after each, the source's STFT (n_fft 16, hop 4), strided down to that resolution and
through its own Snake residual block, is added, then three residual blocks (kernels 3, 7, 11) are
averaged. The last layer gives 9 log magnitudes and 9 phases per STFT frame of hop 4, so one mel
frame is 8 x 5 x 3 x 4 = 480 samples; the inverse STFT of those, clamped to +-0.99, is the waveform.

Attribute names are upstream's (weight norm through ``torch.nn.utils.parametrizations``, so the
keys end in ``parametrizations.weight.original0/1``), so ``HiFTGenerator()`` (the released geometry,
20,821,295 parameters in 328 tensors, no buffers) loads the entries under ``mel2wav.`` of S3Gen's
checkpoint with ``strict=True`` through :func:`load_hift`. Differences from upstream:

- The constructor's defaults are Chatterbox's geometry (24 kHz, upsampling 8/5/3 with kernels
  16/11/7, source blocks 7/7/11), not CosyVoice's 22.05 kHz ones; the F0 predictor is built inside
  (``f0_channels``) instead of passed in, and the iSTFT sizes are plain arguments, not a dict.
- The noise is drawn from ``generator`` when one is given, otherwise from the global RNG in
  upstream's order, so the same ``torch.manual_seed`` gives upstream's waveform. Upstream's
  source module also draws a noise branch that inference throws away; it is not drawn here, which
  leaves the global RNG in a different state after a call (the waveform is the same).
- The STFT and inverse STFT run in float32 whatever the weights' dtype (torch's CPU STFT takes no
  half precision); the waveform comes back in float32.
- The training forward, the initialization and ``remove_weight_norm`` are left out; the Hann window
  is made per call rather than kept on the module, so it never needs moving between devices.
- :func:`fade_in_start` is S3Gen's "trim fade" that it applies to the vocoder's output, offered
  here as a function.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import weight_norm

from model_registry.networks.chatterbox._strict_load import load_exact

__all__ = ("ConvRNNF0Predictor", "HiFTGenerator", "fade_in_start", "load_hift")

SAMPLE_RATE = 24_000


class Snake(nn.Module):
    """x + sin^2(alpha x) / alpha with a learned per-channel frequency ``alpha`` (Liu et al., 2020)."""

    def __init__(self, channels: int):
        super().__init__()
        self.alpha = nn.Parameter(torch.ones(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        alpha = self.alpha[None, :, None]
        # Upstream's 1e-9 guard and reciprocal-then-multiply order, kept so outputs match bit for bit.
        return x + (1.0 / (alpha + 1e-9)) * torch.sin(x * alpha).pow(2)


class ResBlock(nn.Module):
    """HiFi-GAN's residual block with Snake activations: per dilation, Snake -> dilated conv ->
    Snake -> conv, added back to the input."""

    def __init__(self, channels: int, kernel_size: int, dilations: Sequence[int]):
        super().__init__()

        def conv(dilation: int) -> nn.Module:
            padding = dilation * (kernel_size - 1) // 2
            return weight_norm(nn.Conv1d(channels, channels, kernel_size, dilation=dilation, padding=padding))

        self.convs1 = nn.ModuleList(conv(d) for d in dilations)
        self.convs2 = nn.ModuleList(conv(1) for _ in dilations)
        self.activations1 = nn.ModuleList(Snake(channels) for _ in dilations)
        self.activations2 = nn.ModuleList(Snake(channels) for _ in dilations)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for act1, conv1, act2, conv2 in zip(self.activations1, self.convs1, self.activations2, self.convs2):
            x = x + conv2(act2(conv1(act1(x))))
        return x


class ConvRNNF0Predictor(nn.Module):
    """Pitch in Hz per mel frame: five weight-normed 3-wide convolutions with ELU, then a linear
    read-out whose absolute value is the F0 (despite the name, there is no recurrence)."""

    def __init__(self, in_channels: int = 80, cond_channels: int = 512, num_class: int = 1):
        super().__init__()
        layers: list[nn.Module] = []
        for i in range(5):
            width_in = in_channels if i == 0 else cond_channels
            layers += [weight_norm(nn.Conv1d(width_in, cond_channels, 3, padding=1)), nn.ELU()]
        # A Sequential keeps upstream's keys (condnet.0, condnet.2, ...: the ELUs take the odd slots).
        self.condnet = nn.Sequential(*layers)
        self.classifier = nn.Linear(cond_channels, num_class)

    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        """(B, mel_bins, T) -> (B, T)."""
        hidden = self.condnet(mel).transpose(1, 2)
        return self.classifier(hidden).squeeze(-1).abs()


class SourceModuleHnNSF(nn.Module):
    """The harmonic-plus-noise excitation of the neural source filter, from a sample-rate F0."""

    def __init__(
        self,
        sampling_rate: int,
        harmonic_num: int,
        sine_amp: float = 0.1,
        add_noise_std: float = 0.003,
        voiced_threshold: float = 0.0,
    ):
        super().__init__()
        self.sampling_rate = sampling_rate
        self.harmonic_num = harmonic_num
        self.sine_amp = sine_amp
        self.noise_std = add_noise_std
        self.voiced_threshold = voiced_threshold
        self.l_linear = nn.Linear(harmonic_num + 1, 1)

    def forward(self, f0: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """(B, samples) F0 in Hz -> (B, 1, samples) excitation."""
        # Float32 as upstream (its phase accumulator is a float32 buffer whatever the weights' dtype).
        f0 = f0.float()[:, None, :]
        batch, device = f0.shape[0], f0.device
        overtones = torch.arange(1, self.harmonic_num + 2, device=device, dtype=torch.float32)
        cycles = f0 * overtones[None, :, None] / self.sampling_rate
        # Wrapping the running phase to [0, 1) cycles before scaling keeps it small in float32.
        theta = 2 * math.pi * (torch.cumsum(cycles, dim=-1) % 1)

        phase = torch.rand(batch, self.harmonic_num + 1, 1, generator=generator, device=device)
        phase = phase * (2 * math.pi) - math.pi
        phase[:, 0] = 0.0
        sines = self.sine_amp * torch.sin(theta + phase)

        voiced = (f0 > self.voiced_threshold).float()
        # Unvoiced stretches get noise about as loud as the sines would have been (3 sigma = sine_amp).
        noise_amp = voiced * self.noise_std + (1 - voiced) * (self.sine_amp / 3)
        noise = noise_amp * torch.randn(sines.shape, generator=generator, device=device)
        excitation = sines * voiced + noise

        merged = self.l_linear(excitation.transpose(1, 2).to(self.l_linear.weight.dtype))
        return torch.tanh(merged).transpose(1, 2)


class HiFTGenerator(nn.Module):
    """Mel (B, in_channels, T) -> waveform (B, T x hop_size); defaults are the released network."""

    def __init__(
        self,
        in_channels: int = 80,
        base_channels: int = 512,
        nb_harmonics: int = 8,
        sampling_rate: int = SAMPLE_RATE,
        nsf_alpha: float = 0.1,
        nsf_sigma: float = 0.003,
        nsf_voiced_threshold: float = 10.0,
        upsample_rates: Sequence[int] = (8, 5, 3),
        upsample_kernel_sizes: Sequence[int] = (16, 11, 7),
        n_fft: int = 16,
        hop_length: int = 4,
        resblock_kernel_sizes: Sequence[int] = (3, 7, 11),
        resblock_dilation_sizes: Sequence[Sequence[int]] = ((1, 3, 5), (1, 3, 5), (1, 3, 5)),
        source_resblock_kernel_sizes: Sequence[int] = (7, 7, 11),
        source_resblock_dilation_sizes: Sequence[Sequence[int]] = ((1, 3, 5), (1, 3, 5), (1, 3, 5)),
        lrelu_slope: float = 0.1,
        audio_limit: float = 0.99,
        f0_channels: int = 512,
    ):
        super().__init__()
        stages = len(upsample_rates)
        if not (len(upsample_kernel_sizes) == len(source_resblock_kernel_sizes) == stages):
            raise ValueError("upsample_rates, upsample_kernel_sizes and source_resblock_kernel_sizes differ in length")
        self.sampling_rate = sampling_rate
        self.n_fft = n_fft
        self.hop_length = hop_length
        self.lrelu_slope = lrelu_slope
        self.audio_limit = audio_limit
        self.num_kernels = len(resblock_kernel_sizes)
        self.hop_size = math.prod(upsample_rates) * hop_length
        spectrum_channels = n_fft + 2  # n_fft // 2 + 1 bins, real and imaginary parts

        # Registered in upstream's order, so the state dict lists its keys in the same order.
        self.m_source = SourceModuleHnNSF(sampling_rate, nb_harmonics, nsf_alpha, nsf_sigma, nsf_voiced_threshold)
        self.conv_pre = weight_norm(nn.Conv1d(in_channels, base_channels, 7, padding=3))

        widths = [base_channels // 2 ** (i + 1) for i in range(stages)]
        self.ups = nn.ModuleList(
            weight_norm(nn.ConvTranspose1d(width * 2, width, kernel, rate, padding=(kernel - rate) // 2))
            for width, rate, kernel in zip(widths, upsample_rates, upsample_kernel_sizes)
        )

        # The source's STFT runs at the final frame rate; stage i sits prod(rates[i+1:]) times coarser,
        # so a strided convolution brings the spectrum down to it (a 1x1 one at the last stage).
        self.source_downs = nn.ModuleList()
        for i, width in enumerate(widths):
            stride = math.prod(upsample_rates[i + 1 :])
            if stride == 1:
                self.source_downs.append(nn.Conv1d(spectrum_channels, width, 1))
            else:
                self.source_downs.append(nn.Conv1d(spectrum_channels, width, 2 * stride, stride, padding=stride // 2))
        self.source_resblocks = nn.ModuleList(
            ResBlock(width, kernel, dilations)
            for width, kernel, dilations in zip(widths, source_resblock_kernel_sizes, source_resblock_dilation_sizes)
        )
        # Flat, stage after stage, as upstream indexes them (resblocks.{stage * num_kernels + kernel}).
        self.resblocks = nn.ModuleList(
            ResBlock(width, kernel, dilations)
            for width in widths
            for kernel, dilations in zip(resblock_kernel_sizes, resblock_dilation_sizes)
        )
        self.conv_post = weight_norm(nn.Conv1d(widths[-1], spectrum_channels, 7, padding=3))
        self.f0_predictor = ConvRNNF0Predictor(in_channels, f0_channels)

    def _window(self, device: torch.device) -> torch.Tensor:
        # Periodic Hann computed in float64 then rounded, as upstream's scipy window is.
        return torch.hann_window(self.n_fft, periodic=True, dtype=torch.float64, device=device).float()

    def decode(self, mel: torch.Tensor, source: torch.Tensor) -> torch.Tensor:
        """Mel (B, in_channels, T) and excitation (B, 1, T x hop_size) -> waveform (B, T x hop_size)."""
        window = self._window(mel.device)
        spec = torch.stft(
            source[:, 0].float(), self.n_fft, self.hop_length, self.n_fft, window=window, return_complex=True
        )
        source_spec = torch.cat([spec.real, spec.imag], dim=1).to(mel.dtype)

        x = self.conv_pre(mel)
        last = len(self.ups) - 1
        for i, (up, source_down, source_block) in enumerate(zip(self.ups, self.source_downs, self.source_resblocks)):
            x = up(F.leaky_relu(x, self.lrelu_slope))
            if i == last:
                # One reflected sample in front gives T x prod(rates) + 1 frames: the STFT's count
                # for a centred transform of T x hop_size samples.
                x = F.pad(x, (1, 0), mode="reflect")
            x = x + source_block(source_down(source_spec))
            blocks = self.resblocks[i * self.num_kernels : (i + 1) * self.num_kernels]
            total = blocks[0](x)
            for block in blocks[1:]:
                total = total + block(x)
            x = total / self.num_kernels

        # Upstream's last activation uses leaky_relu's default slope (0.01), not lrelu_slope.
        x = self.conv_post(F.leaky_relu(x)).float()
        bins = self.n_fft // 2 + 1
        magnitude = torch.exp(x[:, :bins]).clamp(max=1e2)
        # The sine only bounds the phase to [-1, 1] radians; upstream trained with it, so it stays.
        phase = torch.sin(x[:, bins:])
        spectrum = torch.complex(magnitude * torch.cos(phase), magnitude * torch.sin(phase))
        wave = torch.istft(spectrum, self.n_fft, self.hop_length, self.n_fft, window=window)
        return wave.clamp(-self.audio_limit, self.audio_limit)

    @torch.inference_mode()
    def inference(
        self,
        speech_feat: torch.Tensor,
        cache_source: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Mel (B, in_channels, T) -> (waveform (B, T x hop_size), excitation (B, 1, T x hop_size)).

        ``cache_source``, an excitation from an earlier call (B, 1, n), replaces the start of this
        call's, so chunked synthesis keeps one continuous source across chunk boundaries.
        """
        f0 = self.f0_predictor(speech_feat)
        source = self.m_source(f0.repeat_interleave(self.hop_size, dim=-1), generator=generator)
        if cache_source is not None and cache_source.shape[-1] > 0:
            source[:, :, : cache_source.shape[-1]] = cache_source
        return self.decode(speech_feat, source), source


def fade_in_start(wave: torch.Tensor, sample_rate: int = SAMPLE_RATE) -> torch.Tensor:
    """S3Gen's "trim fade" on a vocoder output (B, samples): 20 ms of silence, then a 20 ms
    raised-cosine fade-in. S3Gen applies it because the first frames carry spill-over from the
    voice prompt's mel."""
    n_trim = sample_rate // 50
    fade = torch.zeros(2 * n_trim, dtype=wave.dtype, device=wave.device)
    fade[n_trim:] = (torch.cos(torch.linspace(math.pi, 0, n_trim, dtype=wave.dtype, device=wave.device)) + 1) / 2
    head = min(wave.shape[-1], fade.shape[0])
    return torch.cat([wave[..., :head] * fade[:head], wave[..., head:]], dim=-1)


def load_hift(
    state_dict: Mapping[str, torch.Tensor],
    prefix: str = "mel2wav.",
    dtype: torch.dtype = torch.float32,
    build: Callable[[], HiFTGenerator] = HiFTGenerator,
) -> HiFTGenerator:
    """The vocoder in eval mode from the entries of ``state_dict`` under ``prefix`` (S3Gen's checkpoint
    keeps it under ``mel2wav.``; other entries are ignored), floating weights cast to ``dtype``.

    ``build`` makes the network (the released geometry by default; tests pass tiny ones); it runs on
    the meta device, since the checkpoint supplies every tensor. Every weight must be present, with
    its shape, and nothing else under the prefix; a ``ValueError`` names what is missing, unexpected
    or misshapen.
    """
    return load_exact(build, state_dict, prefix, "a HiFTGenerator", dtype)
