"""T3's conditioning: what a voice contributes to the front of the token language model's sequence.

A voice is three things (:class:`T3Cond`): the 256-dim speaker embedding from Chatterbox's voice
encoder, up to 150 speech tokens of the reference clip (6 s at 25 Hz), and an "exaggeration" scalar
(upstream's ``emotion_adv``, 0.5 by default). :class:`T3CondEnc` turns them into a short run of
model-width vectors placed before the text:

- the speaker embedding through a linear layer: 1 vector;
- the prompt's speech tokens, embedded by T3 itself (token plus learned position embeddings), then
  resampled by the :class:`Perceiver` to a fixed 32 vectors: 32 learned queries cross-attend to the
  prompt, then attend to themselves, both passes through the same attention block;
- the exaggeration through a bias-free linear layer from 1 to the model width: 1 vector.

So the released model conditions on 34 vectors (2 without a prompt). Attribute names are upstream's
(``spkr_enc``, ``emotion_adv_fc``, ``perceiver.pre_attention_query``, ``perceiver.attn.to_q`` ...), so
these weights load from ``t3_mtl23ls_v2.safetensors`` under ``cond_enc.``. Differences from upstream:

- :class:`T3Cond` is immutable and holds tokens only: upstream caches the prompt's embedding on the
  object it was given (``cond_prompt_speech_emb``) and accepts a CLAP embedding it then refuses.
  :meth:`T3Cond.from_upstream` reads upstream's saved form (the ``t3`` entry of ``conds.pt``).
- Prompt tokens beyond ``speech_cond_prompt_len`` are cut here (the first ones kept); upstream cuts
  the reference audio before tokenizing so that no more come out, and an over-long prompt handed to
  its T3 directly would be used whole.
- An empty prompt counts as no prompt (upstream's perceiver would attend over nothing and return NaN).
- Upstream's attention block carries an unused relative position bias option and dropout (0.2, only
  in training); neither is built here.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ("Perceiver", "T3Cond", "T3CondEnc")


@dataclass(frozen=True)
class T3Cond:
    """One voice for T3.

    ``speaker_emb``: (256,) or (1, 256) voice-encoder embedding. ``cond_prompt_speech_tokens``:
    (T,) or (1, T) S3 speech tokens of the reference clip, or None. ``emotion_adv``: exaggeration,
    0.5 being neutral in Chatterbox's ``generate``.
    """

    speaker_emb: torch.Tensor
    cond_prompt_speech_tokens: torch.Tensor | None = None
    emotion_adv: float | torch.Tensor = 0.5

    @classmethod
    def from_upstream(cls, saved: Mapping[str, object]) -> T3Cond:
        """From upstream's ``T3Cond.__dict__`` (as ``conds.pt`` stores it under ``t3``)."""
        if saved.get("clap_emb") is not None:
            raise ValueError("T3Cond with a CLAP embedding: no Chatterbox checkpoint uses one")
        emotion = saved.get("emotion_adv", 0.5)
        return cls(
            speaker_emb=saved["speaker_emb"],
            cond_prompt_speech_tokens=saved.get("cond_prompt_speech_tokens"),
            emotion_adv=0.5 if emotion is None else emotion,
        )


class _CrossAttention(nn.Module):
    """Pre-norm multi-head attention of ``queries`` over ``context`` with a residual (upstream's
    ``AttentionBlock2``). One LayerNorm serves both inputs, as trained."""

    def __init__(self, channels: int, num_heads: int):
        super().__init__()
        if channels % num_heads:
            raise ValueError(f"{channels} channels do not split into {num_heads} heads")
        self.num_heads = num_heads
        self.norm = nn.LayerNorm(channels)
        self.to_q = nn.Linear(channels, channels)
        self.to_k = nn.Linear(channels, channels)
        self.to_v = nn.Linear(channels, channels)
        self.proj_out = nn.Linear(channels, channels)

    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        batch, length, channels = x.shape
        return x.view(batch, length, self.num_heads, channels // self.num_heads).transpose(1, 2)

    def forward(self, queries: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        q = self._heads(self.to_q(self.norm(queries)))
        context = self.norm(context)
        k = self._heads(self.to_k(context))
        v = self._heads(self.to_v(context))
        attended = F.scaled_dot_product_attention(q, k, v)
        return queries + self.proj_out(attended.transpose(1, 2).flatten(2))


class Perceiver(nn.Module):
    """Resamples a (B, T, C) sequence of any length to (B, num_queries, C)."""

    def __init__(self, num_queries: int = 32, channels: int = 1024, num_heads: int = 4):
        super().__init__()
        self.pre_attention_query = nn.Parameter(torch.empty(1, num_queries, channels))
        # Upstream's initialization, kept so that untrained test models behave like upstream's.
        bound = math.sqrt(3.0) * math.sqrt(2.0 / (2 * num_queries))
        nn.init.uniform_(self.pre_attention_query, -bound, bound)
        self.attn = _CrossAttention(channels, num_heads)

    def forward(self, sequence: torch.Tensor) -> torch.Tensor:
        queries = self.pre_attention_query.expand(sequence.shape[0], -1, -1)
        resampled = self.attn(queries, sequence)
        return self.attn(resampled, resampled)


class T3CondEnc(nn.Module):
    """Speaker embedding, embedded prompt and exaggeration -> (B, 1 + [num_queries] + 1, channels)."""

    def __init__(
        self,
        channels: int = 1024,
        speaker_embed_size: int = 256,
        perceiver_queries: int = 32,
        perceiver_heads: int = 4,
    ):
        super().__init__()
        self.speaker_embed_size = speaker_embed_size
        self.spkr_enc = nn.Linear(speaker_embed_size, channels)
        self.emotion_adv_fc = nn.Linear(1, channels, bias=False)
        self.perceiver = Perceiver(perceiver_queries, channels, perceiver_heads)

    def forward(
        self,
        speaker_emb: torch.Tensor,
        prompt_emb: torch.Tensor | None,
        emotion_adv: torch.Tensor,
    ) -> torch.Tensor:
        """``speaker_emb`` (B, speaker_embed_size); ``prompt_emb`` (B, T, channels) already embedded
        by T3, or None; ``emotion_adv`` (B,) -> the conditioning vectors in sequence order."""
        parts = [self.spkr_enc(speaker_emb.reshape(-1, self.speaker_embed_size))[:, None]]
        if prompt_emb is not None:
            parts.append(self.perceiver(prompt_emb))
        parts.append(self.emotion_adv_fc(emotion_adv.reshape(-1, 1, 1)))
        return torch.cat(parts, dim=1)
