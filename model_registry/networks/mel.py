"""Slaney mel filter banks in numpy, equal to ``librosa.filters.mel``'s defaults (Slaney's mel scale,
Slaney area normalization) without depending on librosa.

Several networks here were trained on log-mel features built with librosa's filters (LTX-2's audio
VAE, Qwen3-TTS's speaker encoder); each computes its STFT in torch and takes its filters from here.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ("hz_to_mel", "mel_filters", "mel_to_hz")

# Slaney's scale: linear at 200/3 Hz per mel up to 1 kHz (mel 15), then logarithmic with 27 mels per
# factor of 6.4 in frequency.
_HZ_PER_MEL = 200.0 / 3
_BREAK_HZ = 1000.0
_BREAK_MEL = _BREAK_HZ / _HZ_PER_MEL
_LOG_STEP = math.log(6.4) / 27.0


def hz_to_mel(hz) -> np.ndarray:
    """Slaney's mel scale: linear below 1 kHz, logarithmic above."""
    hz = np.asarray(hz, dtype=np.float64)
    linear = hz / _HZ_PER_MEL
    logarithmic = _BREAK_MEL + np.log(np.maximum(hz, 1e-12) / _BREAK_HZ) / _LOG_STEP
    return np.where(hz >= _BREAK_HZ, logarithmic, linear)


def mel_to_hz(mel) -> np.ndarray:
    mel = np.asarray(mel, dtype=np.float64)
    linear = mel * _HZ_PER_MEL
    logarithmic = _BREAK_HZ * np.exp(_LOG_STEP * (mel - _BREAK_MEL))
    return np.where(mel >= _BREAK_MEL, logarithmic, linear)


def mel_filters(rate: int, n_fft: int, n_mels: int, fmin: float = 0.0, fmax: float | None = None) -> np.ndarray:
    """(n_mels, n_fft // 2 + 1) float32 triangular filters spaced evenly in mels from ``fmin`` to
    ``fmax`` (Nyquist when None), each scaled to unit area (Slaney normalization)."""
    fmax = rate / 2 if fmax is None else fmax
    frequencies = np.linspace(0, rate / 2, n_fft // 2 + 1)
    edges = mel_to_hz(np.linspace(hz_to_mel(fmin), hz_to_mel(fmax), n_mels + 2))
    widths = np.diff(edges)
    rising = (frequencies[None, :] - edges[:-2, None]) / widths[:-1, None]
    falling = (edges[2:, None] - frequencies[None, :]) / widths[1:, None]
    filters = np.maximum(0.0, np.minimum(rising, falling))
    return (filters * (2.0 / (edges[2:] - edges[:-2]))[:, None]).astype(np.float32)
