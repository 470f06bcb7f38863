"""S3Gen, Chatterbox's speech-token decoder: 25 Hz S3 tokens and a reference voice -> 24 kHz audio.

It bundles four networks, under upstream's attribute names so that ``s3gen.safetensors`` (or
``s3gen.pt``) loads with each helper's strict check: ``tokenizer.`` (:class:`S3Tokenizer`, the
reference's own tokens), ``speaker_encoder.`` (:class:`CAMPPlus`, the 192-dim x-vector), ``flow.``
(:class:`CausalMaskedDiffWithXvec`, tokens to an 80-bin mel at 50 Hz) and ``mel2wav.``
(:class:`HiFTGenerator`, the vocoder). :meth:`S3Gen.embed_ref` turns a reference clip into the
flow's voice prompt; :meth:`S3Gen.inference` runs flow, vocoder and the "trim fade".

The reference mel is Matcha-TTS's (upstream ``utils/mel.py``): 1920-point Hann frames every 480
samples at 24 kHz, reflect-padded by 720 on each side and not centred, magnitude with 1e-9 under the
root, 80 Slaney filters from 0 to 8 kHz (:func:`model_registry.networks.mel.mel_filters`), natural
log clamped at 1e-5. Differences from upstream's ``S3Token2Wav``: resampling to 16 kHz is the
caller's (``embed_ref`` takes both rates, since the loader already holds both), only the
non-streaming, non-meanflow path is offered, and ``trim_fade`` is not a buffer (it never was
persistent, so no key changes).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from torch import nn

from model_registry.networks.chatterbox.campplus import CAMPPlus, load_campplus
from model_registry.networks.chatterbox.flow import CausalMaskedDiffWithXvec, load_flow
from model_registry.networks.chatterbox.hift import HiFTGenerator, fade_in_start, load_hift
from model_registry.networks.chatterbox.s3tokenizer import S3Tokenizer, load_s3tokenizer
from model_registry.networks.mel import mel_filters

__all__ = ("PREFIXES", "S3Gen", "reference_mel")

SAMPLE_RATE = 24_000
PREFIXES = ("flow.", "mel2wav.", "speaker_encoder.", "tokenizer.")
_N_FFT, _HOP, _MELS, _FMAX = 1920, 480, 80, 8000


def reference_mel(wave_24k: torch.Tensor) -> torch.Tensor:
    """(frames, 80) float32 log-mel of mono 24 kHz audio, ``len // 480`` frames (upstream's
    ``mel_spectrogram`` transposed, as ``embed_ref`` hands it to the flow)."""
    wave = torch.as_tensor(wave_24k, dtype=torch.float32).reshape(1, 1, -1)
    pad = (_N_FFT - _HOP) // 2
    wave = nn.functional.pad(wave, (pad, pad), mode="reflect")[:, 0]
    window = torch.hann_window(_N_FFT, device=wave.device)
    spec = torch.stft(wave, _N_FFT, hop_length=_HOP, win_length=_N_FFT, window=window, center=False,
                      normalized=False, onesided=True, return_complex=True)
    spec = torch.view_as_real(spec)
    magnitude = torch.sqrt(spec.pow(2).sum(-1) + 1e-9)
    filters = torch.from_numpy(mel_filters(SAMPLE_RATE, _N_FFT, _MELS, 0.0, _FMAX)).to(wave.device)
    return torch.log(torch.clamp(filters @ magnitude, min=1e-5))[0].T


class S3Gen(nn.Module):
    """Tokenizer, speaker encoder, flow and vocoder, under the names of upstream's ``S3Gen``."""

    def __init__(self, tokenizer: S3Tokenizer, speaker_encoder: CAMPPlus,
                 flow: CausalMaskedDiffWithXvec, mel2wav: HiFTGenerator):
        super().__init__()
        self.tokenizer = tokenizer
        self.speaker_encoder = speaker_encoder
        self.flow = flow
        self.mel2wav = mel2wav

    @classmethod
    def from_state_dict(cls, state_dict: Mapping[str, torch.Tensor], dtype: torch.dtype = torch.float32,
                        geometry: Mapping[str, Any] | None = None) -> S3Gen:
        """From S3Gen's checkpoint; ``geometry`` (the release when empty) has optional ``s3tokenizer``,
        ``campplus`` (keyword arguments), ``flow`` (``vocab_size``, ``input_size``, ``output_size``,
        ``spk_embed_dim``, ``encoder`` and ``decoder`` argument dicts) and ``hift`` entries."""
        from model_registry.networks.chatterbox.conformer import UpsampleConformerEncoder
        from model_registry.networks.chatterbox.flow import CausalConditionalCFM
        from model_registry.networks.chatterbox.flow_estimator import ConditionalDecoder

        geometry = dict(geometry or {})
        stray = sorted(k for k in state_dict if not k.startswith(PREFIXES))
        if stray:
            raise ValueError(f"not an S3Gen state dict: unexpected {stray[:5]}")
        flow_geometry = dict(geometry.get("flow") or {})
        encoder_args = flow_geometry.pop("encoder", None)
        decoder_args = flow_geometry.pop("decoder", None)

        def build_flow() -> CausalMaskedDiffWithXvec:
            encoder = UpsampleConformerEncoder(**encoder_args) if encoder_args else None
            decoder = CausalConditionalCFM(ConditionalDecoder(**decoder_args)) if decoder_args else None
            return CausalMaskedDiffWithXvec(**flow_geometry, encoder=encoder, decoder=decoder)

        hift_args = {k: tuple(map(tuple, v)) if k.endswith("dilation_sizes") else (tuple(v) if isinstance(v, list) else v)
                     for k, v in (geometry.get("hift") or {}).items()}
        # The tokenizer's front end stays float32 (its helper keeps the buffers so); CAM++ too is
        # small and reads the reference only once per voice.
        return cls(
            tokenizer=load_s3tokenizer(state_dict, "tokenizer.", dtype, **(geometry.get("s3tokenizer") or {})),
            speaker_encoder=load_campplus(state_dict, "speaker_encoder.", torch.float32,
                                          **{k: tuple(v) if isinstance(v, list) else v
                                             for k, v in (geometry.get("campplus") or {}).items()}),
            flow=load_flow(state_dict, "flow.", dtype, build=build_flow),
            mel2wav=load_hift(state_dict, "mel2wav.", dtype, build=lambda: HiFTGenerator(**hift_args)),
        )

    @property
    def device(self) -> torch.device:
        return next(self.flow.parameters()).device

    @property
    def vocab_size(self) -> int:
        """Speech tokens at or above this are not S3 tokens (T3's start/stop and spare ids)."""
        return int(self.flow.vocab_size)

    @torch.inference_mode()
    def embed_ref(self, wave_24k: np.ndarray, wave_16k: np.ndarray) -> dict[str, torch.Tensor]:
        """The flow's voice prompt from one reference clip at both rates (the same audio): prompt
        tokens and their count, the 24 kHz prompt mel (1, F, 80) and the CAM++ vector (1, 192)."""
        device = self.device
        mel = reference_mel(torch.as_tensor(np.asarray(wave_24k, dtype=np.float32), device=device))[None]
        embedding = self.speaker_encoder.embed(np.asarray(wave_16k, dtype=np.float32))[None]
        tokens, lengths = self.tokenizer.tokenize([np.asarray(wave_16k, dtype=np.float32)])
        # The flow expects two mel frames per prompt token; upstream cuts the tokens when they disagree.
        if mel.shape[1] != 2 * tokens.shape[1]:
            tokens = tokens[:, : mel.shape[1] // 2]
            lengths = torch.tensor([tokens.shape[1]])
        return {
            "prompt_token": tokens.to(device),
            "prompt_token_len": lengths.to(device),
            "prompt_feat": mel,
            "embedding": embedding.to(device),
        }

    @torch.inference_mode()
    def inference(self, speech_tokens: torch.Tensor, ref_dict: Mapping[str, Any]) -> torch.Tensor:
        """(samples,) float32 waveform at 24 kHz for (T,) S3 tokens in the voice of ``ref_dict``
        (:meth:`embed_ref`'s, or ``conds.pt``'s ``gen``); ``T * 2 * hop`` samples."""
        device = self.device
        prompt = {k: (v.to(device) if torch.is_tensor(v) else v) for k, v in ref_dict.items()
                  if k in ("prompt_token", "prompt_token_len", "prompt_feat", "embedding")}
        prompt["prompt_feat"] = prompt["prompt_feat"].to(next(self.flow.parameters()).dtype)
        tokens = torch.atleast_2d(speech_tokens).to(device)
        mel = self.flow.inference(tokens, None, prompt["prompt_token"], prompt.get("prompt_token_len"),
                                  prompt["prompt_feat"], None, prompt["embedding"])
        wave, _ = self.mel2wav.inference(mel.to(next(self.mel2wav.parameters()).dtype))
        return fade_in_start(wave.float(), SAMPLE_RATE)[0]
