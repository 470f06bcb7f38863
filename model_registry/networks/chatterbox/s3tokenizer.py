"""The S3 speech tokenizer (CosyVoice 2's ``speech_tokenizer_v2_25hz``), which turns Chatterbox's 16 kHz
reference clip into 25 Hz speech tokens for T3's prompt and S3Gen's flow.

Per clip, Whisper's front end: a 400-point (25 ms) periodic-Hann STFT every 160 samples (10 ms),
centred with reflection, the last frame dropped so a clip of ``n`` samples gives ``n // 160`` frames;
power through 128 Slaney mel filters, log10 floored at 1e-10 and at 8 decades below the clip's peak,
then ``(x + 4) / 4``. The network (upstream's ``S3TokenizerV2``):

- ``encoder``: two 3-tap convolutions of stride 2 with GELU (100 Hz -> 25 Hz, 128 -> 1280 channels),
  then six pre-norm transformer blocks (20 heads of 64, MLP 4x with GELU). The attention rotates
  queries and keys (rotary embedding, rotate-half layout, base 10000) and adds an FSMN memory: the
  values, zeroed past the clip, through a 31-tap depthwise convolution plus themselves.
- ``quantizer``: finite scalar quantization. A projection to 8 dimensions, ``tanh`` scaled by 0.999,
  rounded to -1, 0 or 1; the 8 ternary digits (least significant first) are the token, one of
  3**8 = 6561.

Clips longer than 30 s (3000 frames) are cut into 30 s windows every 26 s; each window is tokenized
alone and the 4 s overlaps are split in the middle (50 tokens dropped on each inner edge). This is
upstream's rule, kept for equal output, including its quirk that a last window shorter than 2 s
contributes nothing. Chatterbox itself never passes clips that long (at most 10 s).

Attribute names are upstream's, so ``S3Tokenizer()`` (the released geometry, 123,714,568 parameters;
104 state entries with the ``_mel_filters`` and ``window`` buffers of Chatterbox's subclass) loads the
entries under ``tokenizer.`` of S3Gen's checkpoint with ``strict=True`` through
:func:`load_s3tokenizer`. Differences from upstream, none of which changes valid tokens beyond
float rounding:

- The mel filters come from :func:`model_registry.networks.mel.mel_filters`, which rounds to float32
  once; librosa rounds twice, so some weights differ by one unit in the last place (3.7e-9 at most).
  Released checkpoints carry librosa's table as ``_mel_filters`` and it replaces this one on load.
- Attention goes through ``scaled_dot_product_attention`` with a boolean key mask instead of an
  explicit product with a -1e10 bias; the rotary tables are computed per call for the head width
  (upstream precomputes 2048 positions for heads of 64, which is what the released network has).
- Tokens past each clip's length are 0. Upstream's usual path leaves there whatever the zero-padded
  frames quantize to (its long-audio path already writes 0).
- The front-end buffers stay float32 whatever the network's dtype, and the log-mel is always float32;
  upstream's ``accelerator`` argument, ``pad`` helper, ONNX import and ``use_sdpa`` switch are left out.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from model_registry.networks.chatterbox._strict_load import own_entries, require_exact
from model_registry.networks.mel import mel_filters

__all__ = ("CODEBOOK_SIZE", "SAMPLE_RATE", "TOKEN_RATE", "S3Tokenizer", "load_s3tokenizer")

SAMPLE_RATE = 16_000
TOKEN_RATE = 25
_N_FFT = 400  # 25 ms
_HOP = 160  # 10 ms: 100 mel frames per second, 4 per token after the two stride-2 convolutions
_FRAMES_PER_TOKEN = 4
# torch.stft(center=True) reflects n_fft // 2 samples on each side, which needs more than that many.
_MIN_SAMPLES = _N_FFT // 2 + 1

_FSQ_DIMS = 8
_FSQ_LEVELS = 3
CODEBOOK_SIZE = _FSQ_LEVELS**_FSQ_DIMS
# Upstream scales tanh by float32(0.999) before rounding; kept, as it moves the thresholds to
# |tanh| = 0.5 / 0.999 and so decides borderline tokens.
_FSQ_SCALE = 0.999

_FSMN_TAPS = 31
_ROTARY_BASE = 10_000.0

# Upstream's long-audio rule, in mel frames: 30 s windows overlapping by 4 s.
_WINDOW_FRAMES = 30 * SAMPLE_RATE // _HOP
_OVERLAP_FRAMES = 4 * SAMPLE_RATE // _HOP
_EDGE_TOKENS = _OVERLAP_FRAMES // 2 // _FRAMES_PER_TOKEN


def _within(lengths: torch.Tensor, steps: int) -> torch.Tensor:
    """(B, steps) mask, true where the step index is below the item's length."""
    return torch.arange(steps, device=lengths.device)[None, :] < lengths[:, None]


def _halved(lengths: torch.Tensor) -> torch.Tensor:
    """Output lengths of a 3-tap, stride-2 convolution padded by 1 on each side."""
    return (lengths - 1) // 2 + 1


def _rotary_tables(steps: int, head_dim: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """(steps, head_dim) cosines and sines, each frequency repeated in both halves (rotate-half layout)."""
    inverse = 1.0 / _ROTARY_BASE ** (torch.arange(0, head_dim, 2, device=device).float() / head_dim)
    angles = torch.outer(torch.arange(steps, device=device).float(), inverse)
    angles = torch.cat([angles, angles], dim=-1)
    return angles.cos(), angles.sin()


def _rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotary embedding of (B, heads, T, head_dim) queries or keys."""
    first, second = x.chunk(2, dim=-1)
    return x * cos + torch.cat([-second, first], dim=-1) * sin


class _FSMNAttention(nn.Module):
    """Rotary multi-head self-attention plus an FSMN memory over the values (upstream's
    ``FSMNMultiHeadAttention``); keys have no bias."""

    def __init__(self, width: int, heads: int):
        super().__init__()
        self.heads = heads
        self.query = nn.Linear(width, width)
        self.key = nn.Linear(width, width, bias=False)
        self.value = nn.Linear(width, width)
        self.out = nn.Linear(width, width)
        # Upstream pads outside the convolution; with an odd tap count that is the same as padding inside.
        self.fsmn_block = nn.Conv1d(
            width, width, _FSMN_TAPS, padding=_FSMN_TAPS // 2, groups=width, bias=False
        )

    def forward(self, x: torch.Tensor, valid: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        batch, steps, width = x.shape
        split = (batch, steps, self.heads, width // self.heads)
        q = _rotate(self.query(x).view(split).transpose(1, 2), cos, sin)
        k = _rotate(self.key(x).view(split).transpose(1, 2), cos, sin)
        v = self.value(x)

        keep = valid[:, :, None].to(v.dtype)
        values = v * keep
        memory = (self.fsmn_block(values.transpose(1, 2)).transpose(1, 2) + values) * keep

        # Padded keys are masked; every query sees at least its clip's first frame, so no row is empty.
        attended = F.scaled_dot_product_attention(
            q, k, v.view(split).transpose(1, 2), attn_mask=valid[:, None, None, :]
        )
        return self.out(attended.transpose(1, 2).reshape(batch, steps, width)) + memory


class _Block(nn.Module):
    def __init__(self, width: int, heads: int):
        super().__init__()
        self.attn = _FSMNAttention(width, heads)
        self.attn_ln = nn.LayerNorm(width, eps=1e-5)
        self.mlp = nn.Sequential(nn.Linear(width, 4 * width), nn.GELU(), nn.Linear(4 * width, width))
        self.mlp_ln = nn.LayerNorm(width, eps=1e-5)

    def forward(self, x: torch.Tensor, valid: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.attn_ln(x), valid, cos, sin)
        return x + self.mlp(self.mlp_ln(x))


class _AudioEncoder(nn.Module):
    """Upstream's ``AudioEncoderV2``: (B, n_mels, T) at 100 Hz -> (B, ceil(T / 4), width) at 25 Hz."""

    def __init__(self, n_mels: int, width: int, heads: int, layers: int):
        super().__init__()
        if width % heads or (width // heads) % 2:
            raise ValueError(f"width {width} does not split into {heads} heads of even size")
        self.head_dim = width // heads
        self.conv1 = nn.Conv1d(n_mels, width, 3, stride=2, padding=1)
        self.conv2 = nn.Conv1d(width, width, 3, stride=2, padding=1)
        self.blocks = nn.ModuleList(_Block(width, heads) for _ in range(layers))

    def forward(self, mels: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        # Each convolution sees zeros past the clip, so padding in a batch cannot leak into valid steps.
        x = mels * _within(lengths, mels.shape[-1])[:, None, :].to(mels.dtype)
        x = F.gelu(self.conv1(x))
        lengths = _halved(lengths)
        x = x * _within(lengths, x.shape[-1])[:, None, :].to(x.dtype)
        x = F.gelu(self.conv2(x)).transpose(1, 2)
        lengths = _halved(lengths)

        valid = _within(lengths, x.shape[1])
        cos, sin = _rotary_tables(x.shape[1], self.head_dim, x.device)
        cos, sin = cos.to(x.dtype), sin.to(x.dtype)
        for block in self.blocks:
            x = block(x, valid, cos, sin)
        return x, lengths


class _FSQCodebook(nn.Module):
    def __init__(self, width: int):
        super().__init__()
        self.project_down = nn.Linear(width, _FSQ_DIMS)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        """(..., width) -> (...) token ids in [0, 6561)."""
        digits = (self.project_down(hidden).float().tanh() * _FSQ_SCALE).round().long() + 1
        powers = _FSQ_LEVELS ** torch.arange(_FSQ_DIMS, device=hidden.device)
        return (digits * powers).sum(dim=-1)


class _Quantizer(nn.Module):
    """Holds the codebook under ``_codebook``, the name its weights have in the checkpoint."""

    def __init__(self, width: int):
        super().__init__()
        self._codebook = _FSQCodebook(width)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return self._codebook(hidden)


class S3Tokenizer(nn.Module):
    """16 kHz speech -> 25 Hz tokens in [0, 6561); the default arguments are the released geometry."""

    codebook_size = CODEBOOK_SIZE

    def __init__(self, n_mels: int = 128, width: int = 1280, heads: int = 20, layers: int = 6):
        super().__init__()
        self.n_mels = n_mels
        self.encoder = _AudioEncoder(n_mels, width, heads, layers)
        self.quantizer = _Quantizer(width)
        # Persistent, as upstream registers them: released checkpoints carry both.
        for name, value in _front_end_buffers(n_mels).items():
            self.register_buffer(name, value)

    def log_mel(self, wave_16k: np.ndarray | torch.Tensor) -> torch.Tensor:
        """(n_mels, samples // 160) float32 log-mel of one mono 16 kHz clip, scaled as Whisper's."""
        wave = torch.as_tensor(wave_16k)
        if wave.ndim == 2 and wave.shape[0] == 1:
            wave = wave[0]
        if wave.ndim != 1:
            raise ValueError(f"log_mel takes mono audio of shape (samples,), not {tuple(wave.shape)}")
        if wave.shape[0] < _MIN_SAMPLES:
            raise ValueError(f"need at least {_MIN_SAMPLES} samples at 16 kHz, got {wave.shape[0]}")
        window = self.window.float()
        wave = wave.to(device=window.device, dtype=torch.float32)
        spectrum = torch.stft(wave, _N_FFT, _HOP, window=window, return_complex=True)
        # The last centred frame is dropped so that every 160 samples make exactly one frame.
        power = spectrum[:, :-1].abs().pow(2)
        log_mel = (self._mel_filters.float() @ power).clamp_min(1e-10).log10()
        log_mel = torch.maximum(log_mel, log_mel.max() - 8.0)
        return (log_mel + 4.0) / 4.0

    def forward(self, mels: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, n_mels, T) log-mels valid up to (B,) ``lengths`` -> (B, T') tokens, 0 past each clip's
        (B,) token count ``ceil(length / 4)``. Clips over 30 s go through upstream's window rule."""
        lengths = lengths.to(device=mels.device, dtype=torch.long)
        if bool((lengths > _WINDOW_FRAMES).any()):
            return self._tokenize_in_windows(mels, lengths)
        hidden, token_lengths = self.encoder(mels, lengths)
        tokens = self.quantizer(hidden)
        return tokens.masked_fill(~_within(token_lengths, tokens.shape[1]), 0), token_lengths

    @torch.inference_mode()
    def tokenize(
        self, wavs: Iterable[np.ndarray | torch.Tensor], max_len: int | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Mono 16 kHz clips -> ((B, T) long tokens, (B,) long counts), as Chatterbox's S3Tokenizer.

        A clip of ``n`` samples gives ``ceil((n // 160) / 4)`` tokens (25 per second). ``max_len``
        keeps the first ``4 * max_len`` mel frames of each clip, so at most ``max_len`` tokens; clips
        are not padded up to it.
        """
        if max_len is not None and max_len < 1:
            raise ValueError(f"max_len must be a positive token count, got {max_len}")
        mels = []
        for wav in wavs:
            mel = self.log_mel(wav)
            mels.append(mel if max_len is None else mel[:, : max_len * _FRAMES_PER_TOKEN])
        if not mels:
            raise ValueError("tokenize needs at least one clip")
        lengths = torch.tensor([mel.shape[1] for mel in mels], device=mels[0].device)
        batch = torch.zeros(len(mels), self.n_mels, int(lengths.max()), device=mels[0].device)
        for row, mel in zip(batch, mels):
            row[:, : mel.shape[1]] = mel
        dtype = self.quantizer._codebook.project_down.weight.dtype
        return self(batch.to(dtype), lengths)

    def _tokenize_in_windows(self, mels: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        # Every window of every clip (a short clip is its own single window) goes through one batch.
        stride = _WINDOW_FRAMES - _OVERLAP_FRAMES
        owners, spans = [], []
        for clip, length in enumerate(lengths.tolist()):
            starts = range(0, length, stride) if length > _WINDOW_FRAMES else [0]
            for start in starts:
                owners.append(clip)
                spans.append((start, min(start + _WINDOW_FRAMES, length)))
        windows = torch.zeros(len(spans), mels.shape[1], _WINDOW_FRAMES, dtype=mels.dtype, device=mels.device)
        for window, clip, (start, end) in zip(windows, owners, spans):
            window[:, : end - start] = mels[clip, :, start:end]
        window_lengths = torch.tensor([end - start for start, end in spans], device=mels.device)
        hidden, token_lengths = self.encoder(windows, window_lengths)
        tokens = self.quantizer(hidden)

        pieces: list[list[torch.Tensor]] = [[] for _ in range(mels.shape[0])]
        for clip, row, count in zip(owners, tokens, token_lengths.tolist()):
            pieces[clip].append(row[:count])
        merged = [_merge_windows(clip_pieces) for clip_pieces in pieces]
        counts = torch.tensor([len(m) for m in merged], device=mels.device)
        out = torch.zeros(len(merged), int(counts.max()), dtype=torch.long, device=mels.device)
        for row, clip_tokens in zip(out, merged):
            row[: len(clip_tokens)] = clip_tokens
        return out, counts


def _merge_windows(pieces: list[torch.Tensor]) -> torch.Tensor:
    """One clip's window tokens joined as upstream joins them: 50 tokens (2 s) dropped on each side
    of every inner window edge, so each overlap is split in its middle."""
    if len(pieces) == 1:
        return pieces[0]
    head, *middle, tail = pieces
    inner = [piece[_EDGE_TOKENS:-_EDGE_TOKENS] for piece in middle]
    return torch.cat([head[:-_EDGE_TOKENS], *inner, tail[_EDGE_TOKENS:]])


def _front_end_buffers(n_mels: int) -> dict[str, torch.Tensor]:
    """The log-mel front end's persistent buffers, as Chatterbox's S3Tokenizer registers them."""
    return {
        "_mel_filters": torch.from_numpy(mel_filters(SAMPLE_RATE, _N_FFT, n_mels)),
        "window": torch.hann_window(_N_FFT),
    }


def load_s3tokenizer(
    state_dict: Mapping[str, torch.Tensor],
    prefix: str = "tokenizer.",
    dtype: torch.dtype = torch.float32,
    **geometry,
) -> S3Tokenizer:
    """S3Tokenizer in eval mode from the entries of ``state_dict`` under ``prefix`` (S3Gen's checkpoint
    keeps it under ``tokenizer.``; other entries are ignored), weights cast to ``dtype``.

    Every weight must be present, with its shape, and nothing else under the prefix; a ``ValueError``
    names what is missing, unexpected or misshapen. The front end's ``_mel_filters`` and ``window``
    may be absent (some Chatterbox checkpoints leave them out, and upstream declares them ignorable)
    and are then computed; they stay float32 whatever ``dtype`` is.
    """
    own = own_entries(state_dict, prefix)
    # Built on the meta device: the checkpoint supplies every tensor, so random init would be wasted.
    with torch.device("meta"):
        model = S3Tokenizer(**geometry)
    front_end = _front_end_buffers(model.n_mels)
    for key, value in front_end.items():
        own.setdefault(key, value)
    require_exact(model, own, prefix, "an S3Tokenizer")
    own = {k: v.to(torch.float32 if k in front_end else dtype) for k, v in own.items()}
    model.load_state_dict(own, strict=True, assign=True)
    return model.eval()
