"""Chatterbox's voice encoder: the LSTM speaker network whose 256-dim vector conditions T3.

It comes from Resemble's port of Real-Time-Voice-Cloning's GE2E encoder. A reference clip at 16 kHz
has its leading and trailing silence trimmed (librosa's ``effects.trim`` at 20 dB below the loudest
frame), becomes 40 Slaney mels of *power* (not log: 400-point Hann frames every 160 samples, centred
with reflect padding, up to 8 kHz), and is cut into overlapping 160-frame "partials" 77 frames apart
(1.3 partials per second). Each partial runs through a 3-layer LSTM; the last layer's final hidden
state goes through a linear projection and a ReLU and is L2-normalized. The clip's embedding is the
mean of its partials' embeddings, L2-normalized again.

How many partials a clip gets: as many whole windows as fit, plus one more over the tail (padded
with zero mel frames) when that tail covers at least 80 % of a window, and always at least one, so a
clip shorter than 1.6 s is one zero-padded partial.

Attribute names are upstream's (``lstm``, ``proj`` and the GE2E training loss's ``similarity_weight``
and ``similarity_bias``, unused at inference but in the checkpoint), so ``ve.safetensors`` loads with
``strict=True`` through :func:`load_voice_encoder`. ``VoiceEncoder()`` is the released geometry;
smaller arguments build tiny test models.

Differences from upstream, none of which changes the released network's output:

- librosa is not used: :func:`trim_silence` and :func:`mel_spectrogram` redo its ``effects.trim``
  and ``stft`` in numpy with the same float32/float64 steps, and the filters come from
  :mod:`model_registry.networks.mel` (equal to librosa's to one float32 ulp).
- Only what Chatterbox Multilingual uses is offered: :meth:`VoiceEncoder.embed` is
  ``embeds_from_wavs([wav], sample_rate=16000)`` with its defaults (trim at 20 dB, rate 1.3,
  ``min_coverage`` 0.8) as ``prepare_conditionals`` calls it; no resampling, batching of clips,
  speaker averaging or similarity scoring.
- The step between partials is computed from the hop length (16000 / 1.3 / 160 = 76.9 -> 77 frames);
  upstream divides by the partial length instead, which is also 160 in the released configuration,
  so tiny test models with shorter partials keep the released rate.
- An empty clip is refused with a ``ValueError`` (upstream fails inside librosa).
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np
import scipy.signal
import torch
import torch.nn.functional as F
from numpy.lib.stride_tricks import sliding_window_view
from torch import nn

from model_registry.networks.mel import mel_filters

__all__ = (
    "SAMPLE_RATE",
    "VoiceEncoder",
    "load_voice_encoder",
    "mel_spectrogram",
    "partial_windows",
    "trim_silence",
)

SAMPLE_RATE = 16_000

# Upstream's VoiceEncConfig front end.
_N_FFT = 400
_HOP = 160
_FMAX = 8000.0

# librosa.effects.trim's defaults, with the top_db embeds_from_wavs passes.
_TRIM_TOP_DB = 20.0
_TRIM_FRAME = 2048
_TRIM_HOP = 512
_TRIM_AMIN = 1e-10  # amplitude_to_db's amin of 1e-5, squared

# embeds_from_wavs' "Resemble's default" of 1.3 partials per second and inference()'s coverage rule.
_PARTIALS_PER_SECOND = 1.3
_MIN_COVERAGE = 0.8
_PARTIAL_STEP = int(np.round(SAMPLE_RATE / _PARTIALS_PER_SECOND / _HOP))  # 77 frames
# Partials per LSTM call, as embeds_from_wavs' batch_size; it splits the work the same way.
_BATCH = 32


# --------------------------------------------------------------------------------------------------
# Front end: silence trimming and the power mel spectrogram.
# --------------------------------------------------------------------------------------------------


def trim_silence(wave: np.ndarray, top_db: float = _TRIM_TOP_DB) -> np.ndarray:
    """``wave`` without its leading and trailing frames quieter than ``top_db`` below its loudest,
    as ``librosa.effects.trim(wave, top_db=top_db)[0]``.

    Frames are 2048 samples every 512, centred on zero padding; the kept span runs from the first
    loud frame's start to one hop past the last loud frame's start. Loudness is RMS in float32
    arithmetic laid out as librosa lays it out, so frames right at the threshold decide the same way.
    A silent clip (all frames at the -100 dB floor) is kept whole, as librosa keeps it.
    """
    wave = np.asarray(wave)
    padded = np.pad(wave, _TRIM_FRAME // 2)
    # (frame_length, frames) with the sample axis contiguous, as librosa.util.frame returns it.
    frames = sliding_window_view(padded, _TRIM_FRAME)[::_TRIM_HOP].T
    rms = np.sqrt(np.mean(np.square(frames, dtype=np.float32), axis=0))
    power = np.square(rms)
    loudest = np.max(rms)
    db = 10.0 * np.log10(np.maximum(_TRIM_AMIN, power))
    db -= 10.0 * np.log10(np.maximum(_TRIM_AMIN, loudest**2))
    loud = np.flatnonzero(db > -top_db)
    if loud.size == 0:
        return wave[:0]
    return wave[int(loud[0]) * _TRIM_HOP : min(wave.shape[-1], (int(loud[-1]) + 1) * _TRIM_HOP)]


def mel_spectrogram(wave: np.ndarray, n_mels: int = 40) -> np.ndarray:
    """(frames, n_mels) float32 Slaney mel *power* of mono 16 kHz audio, upstream's ``melspectrogram``
    transposed; ``frames`` is ``1 + len(wave) // 160``.

    As librosa's ``stft``: frames centred by reflect padding of 200 samples, a periodic Hann window,
    the FFT in float64 stored as complex64; then the squared magnitude times the filters in float32.
    """
    wave = np.asarray(wave)
    if wave.ndim != 1:
        raise ValueError(f"mel_spectrogram takes mono audio of shape (samples,), not {wave.shape}")
    if wave.shape[0] == 0:
        raise ValueError("mel_spectrogram got no samples")
    padded = np.pad(wave, _N_FFT // 2, mode="reflect")
    frames = sliding_window_view(padded, _N_FFT)[::_HOP]
    window = scipy.signal.get_window("hann", _N_FFT, fftbins=True)
    spectrum = np.fft.rfft(frames * window, axis=-1).astype(np.complex64)
    power = np.abs(spectrum) ** 2
    filters = mel_filters(SAMPLE_RATE, _N_FFT, n_mels, fmin=0.0, fmax=_FMAX)
    return (filters @ power.T).T


def partial_windows(n_frames: int, partial_frames: int, step: int = _PARTIAL_STEP) -> tuple[int, int]:
    """(number of partials, frames they span) for a mel of ``n_frames`` frames.

    Whole windows ``step`` apart, then one more if the frames left after the last one would fill at
    least 80 % of a window, and never fewer than one; the mel is then cut or zero-padded to
    ``partial_frames + step * (count - 1)`` frames.
    """
    if n_frames <= 0:
        raise ValueError(f"need at least one mel frame, got {n_frames}")
    count, remainder = divmod(max(n_frames - partial_frames + step, 0), step)
    # remainder + (partial_frames - step) is how much of one more window the leftover frames fill.
    if count == 0 or (remainder + partial_frames - step) / partial_frames >= _MIN_COVERAGE:
        count += 1
    return count, partial_frames + step * (count - 1)


# --------------------------------------------------------------------------------------------------
# Network.
# --------------------------------------------------------------------------------------------------


class VoiceEncoder(nn.Module):
    """Chatterbox's voice encoder; the default arguments are the released geometry."""

    def __init__(
        self,
        num_mels: int = 40,
        hidden_size: int = 256,
        embed_size: int = 256,
        num_layers: int = 3,
        partial_frames: int = 160,
    ):
        super().__init__()
        if partial_frames < _PARTIAL_STEP:
            # Partials further apart than they are long would skip audio; upstream asserts the same.
            raise ValueError(f"partial_frames must be at least the {_PARTIAL_STEP}-frame step, got {partial_frames}")
        self.num_mels = num_mels
        self.embed_size = embed_size
        self.partial_frames = partial_frames
        self.lstm = nn.LSTM(num_mels, hidden_size, num_layers=num_layers, batch_first=True)
        self.proj = nn.Linear(hidden_size, embed_size)
        # GE2E's learned cosine-similarity scale and offset: training only, kept for the weight keys.
        self.similarity_weight = nn.Parameter(torch.tensor([10.0]))
        self.similarity_bias = nn.Parameter(torch.tensor([-5.0]))

    def forward(self, mels: torch.Tensor) -> torch.Tensor:
        """(B, partial_frames, num_mels) mel power -> (B, embed_size) unit-norm partial embeddings."""
        _, (hidden, _) = self.lstm(mels)
        raw = F.relu(self.proj(hidden[-1]))
        return raw / torch.linalg.norm(raw, dim=1, keepdim=True)

    @torch.no_grad()
    def embed(self, wav_16k: np.ndarray | torch.Tensor) -> torch.Tensor:
        """The (embed_size,) unit-norm speaker vector of one mono 16 kHz clip (float samples in
        [-1, 1]), as ``prepare_conditionals`` gets it from upstream; on the model's device and dtype.

        Upstream receives the clip as float32 from librosa, so other dtypes are cast to float32 first.
        """
        if isinstance(wav_16k, torch.Tensor):
            wav_16k = wav_16k.detach().cpu().numpy()
        wave = np.asarray(wav_16k, dtype=np.float32)
        if wave.ndim == 2 and wave.shape[0] == 1:
            wave = wave[0]
        if wave.ndim != 1:
            raise ValueError(f"embed takes mono audio of shape (samples,), not {wave.shape}")
        if wave.shape[0] == 0:
            raise ValueError("embed got an empty clip")
        mel = mel_spectrogram(trim_silence(wave), self.num_mels)

        count, span = partial_windows(mel.shape[0], self.partial_frames)
        if span > mel.shape[0]:
            mel = np.concatenate([mel, np.zeros((span - mel.shape[0], self.num_mels), dtype=np.float32)])
        parameter = next(self.parameters())
        mel = torch.from_numpy(np.ascontiguousarray(mel[:span])).to(device=parameter.device, dtype=parameter.dtype)
        partials = mel.unfold(0, self.partial_frames, _PARTIAL_STEP).transpose(1, 2)  # (count, P, M)

        embeddings = torch.cat([self(batch) for batch in partials.chunk(math.ceil(count / _BATCH))])
        mean = embeddings.mean(dim=0)
        return mean / torch.linalg.norm(mean)


def _listed(keys: list[str], limit: int = 8) -> str:
    shown = ", ".join(keys[:limit])
    return shown if len(keys) <= limit else f"{shown} and {len(keys) - limit} more"


def load_voice_encoder(
    state_dict: Mapping[str, torch.Tensor],
    prefix: str = "",
    dtype: torch.dtype = torch.float32,
    **geometry,
) -> VoiceEncoder:
    """VoiceEncoder in eval mode from the entries of ``state_dict`` under ``prefix`` (``ve.safetensors``
    keeps them at the top level; other prefixes are ignored), floating weights cast to ``dtype``.

    Every weight must be present with its shape and nothing else under the prefix; a ``ValueError``
    names what is missing, unexpected or misshapen (a checkpoint for another geometry).
    """
    own = {key[len(prefix) :]: value for key, value in state_dict.items() if key.startswith(prefix)}
    # Built on the meta device: the checkpoint supplies every tensor, so random init would be wasted.
    with torch.device("meta"):
        model = VoiceEncoder(**geometry)
    expected = model.state_dict()
    missing = sorted(expected.keys() - own.keys())
    unexpected = sorted(own.keys() - expected.keys())
    misshapen = sorted(
        f"{prefix}{key} {tuple(own[key].shape)} (expected {tuple(value.shape)})"
        for key, value in expected.items()
        if key in own and own[key].shape != value.shape
    )
    if missing or unexpected or misshapen:
        problems = []
        if missing:
            problems.append(f"missing {len(missing)}: {_listed([prefix + k for k in missing])}")
        if unexpected:
            problems.append(f"unexpected {len(unexpected)}: {_listed([prefix + k for k in unexpected])}")
        if misshapen:
            problems.append(f"wrong shape {len(misshapen)}: {_listed(misshapen)}")
        raise ValueError(f"not a VoiceEncoder state dict under {prefix!r} ({'; '.join(problems)})")
    own = {k: v.to(dtype) if v.is_floating_point() else v for k, v in own.items()}
    model.load_state_dict(own, strict=True, assign=True)
    return model.eval()
