"""The multilingual T3's guard against hallucinated tails (upstream's ``AlignmentStreamAnalyzer``).

A few attention heads of T3's backbone learned to follow the text while speech tokens are drawn:
averaged, heads 15, 11 and 2 of layers 12, 13 and 9 put each speech frame's weight on the text token
being spoken. From that alignment, read after every step, the guard

- keeps the stop token from being drawn while the alignment is still short of the last three text
  tokens (for texts over five tokens);
- forces the stop token once the text is done and speech goes on regardless: the last three text
  tokens held for a total weight of 5 or more frames (a long tail), or more than 5 frames' worth of
  peak weight back on earlier text (a repetition);
- forces the stop token when the same speech token comes out twice in a row (as upstream does).

Upstream reads the heads with a forward hook that needs attention weights, so it switches the whole
backbone to eager attention (and leaves it so). Here the three heads are recomputed from the layer
inputs and the key cache (:func:`aligned_attention`), one query head each, and the backbone keeps SDPA.
Other differences from upstream:

- Weights are averaged in float32 (upstream: in the model's dtype).
- When five or fewer text tokens have been spoken through, upstream's repetition check takes a
  maximum over no text tokens and raises; here it finds no repetition.
- Upstream's false-start detection only records where speech started and changes no logits; it is
  not ported. Nor is its ``AlignmentAnalysisResult`` (never emitted).
"""

from __future__ import annotations

import torch
from transformers.cache_utils import Cache
from transformers.models.llama.modeling_llama import LlamaModel

__all__ = ("ALIGNMENT_HEADS", "AlignmentStreamAnalyzer", "aligned_attention")

# (layer, head) pairs of the released multilingual T3 whose attention tracks the text.
ALIGNMENT_HEADS = ((12, 15), (13, 11), (9, 2))

# Logit magnitude used to forbid or force a token; fits every 16-bit float type.
_FORCE = float(2**15)


def aligned_attention(
    tfmr: LlamaModel,
    hidden_states: tuple[torch.Tensor, ...],
    cache: Cache,
    heads: tuple[tuple[int, int], ...],
) -> torch.Tensor:
    """(queries, keys) float32 attention weights of batch row 0, averaged over ``heads``, for the
    forward pass that just produced ``hidden_states`` (the backbone's per-layer inputs) and filled
    ``cache``. Matches what eager attention would have returned for those heads."""
    weights = []
    for layer_index, head in heads:
        layer = tfmr.layers[layer_index]
        attention = layer.self_attn
        x = layer.input_layernorm(hidden_states[layer_index][:1])
        keys = cache.layers[layer_index].keys[0, head // attention.num_key_value_groups]
        rows = slice(head * attention.head_dim, (head + 1) * attention.head_dim)
        bias = attention.q_proj.bias[rows] if attention.q_proj.bias is not None else None
        query = torch.nn.functional.linear(x, attention.q_proj.weight[rows], bias)  # (1, Tq, head_dim)

        n_queries, n_keys = query.shape[1], keys.shape[0]
        positions = torch.arange(n_keys - n_queries, n_keys, device=x.device)[None]
        cos, sin = tfmr.rotary_emb(x, positions)
        half = query.shape[-1] // 2
        rotated = torch.cat((-query[..., half:], query[..., :half]), dim=-1)
        query = (query * cos + rotated * sin)[0]

        scores = (query @ keys.T).float() * attention.scaling
        future = positions[0, :, None] < torch.arange(n_keys, device=x.device)[None, :]
        weights.append(scores.masked_fill(future, float("-inf")).softmax(dim=-1))
    return torch.stack(weights).mean(dim=0)


class AlignmentStreamAnalyzer:
    """Per-utterance state of the guard; :meth:`step` once per drawn token, in order."""

    def __init__(self, text_slice: tuple[int, int], eos_token: int):
        """``text_slice``: where the text tokens (start and stop included) sit in the sequence."""
        self.text_start, self.text_end = text_slice
        self.eos_token = eos_token
        self.alignment = torch.zeros(0, self.text_end - self.text_start)
        self.frame = 0
        self.text_position = 0
        self.completed_at: int | None = None
        self.last_tokens: list[int] = []

    def step(self, logits: torch.Tensor, attention: torch.Tensor, last_token: int) -> torch.Tensor:
        """The (1, V) logits of the next token, edited as the alignment demands.

        ``attention`` is :func:`aligned_attention` of the pass that produced ``logits``;
        ``last_token`` the token fed to it (the start-of-speech token at the first step).
        """
        chunk = attention[:, self.text_start : self.text_end].float().cpu()
        if self.frame == 0:
            # The first pass also covered the conditioning and the text; keep its speech rows.
            chunk = chunk[self.text_end :]
        # Frame n can only have reached text token n: later weight is treated as noise.
        chunk[:, self.frame + 1 :] = 0
        self.alignment = torch.cat((self.alignment, chunk))
        frames, text_len = self.alignment.shape

        position = int(chunk[-1].argmax())
        # Big jumps are ignored as glitches (the bounds are upstream's, "very lenient").
        if -4 < position - self.text_position < 7:
            self.text_position = position
        # The stop token rarely gets weight and the one before is often punctuation: near the end
        # means within the last three.
        if self.completed_at is None and self.text_position >= text_len - 3:
            self.completed_at = frames

        long_tail = repeated_text = False
        if self.completed_at is not None:
            since = self.alignment[self.completed_at :]
            long_tail = bool(since[:, -3:].sum(dim=0).max() >= 5)  # about 200 ms on the last tokens
            earlier = since[:, :-5]
            repeated_text = earlier.numel() > 0 and bool(earlier.max(dim=1).values.sum() > 5)

        self.last_tokens = (self.last_tokens + [last_token])[-8:]
        repeated_token = len(self.last_tokens) >= 3 and self.last_tokens[-1] == self.last_tokens[-2]

        logits = logits.clone()
        if position < text_len - 3 and text_len > 5:
            logits[..., self.eos_token] = -_FORCE
        if long_tail or repeated_text or repeated_token:
            logits.fill_(-_FORCE)
            logits[..., self.eos_token] = _FORCE
        self.frame += 1
        return logits
