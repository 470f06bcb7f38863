"""T3, Chatterbox's token-to-token model: text tokens and a voice -> 25 Hz S3 speech tokens.

T3 is a 30-layer Llama (hidden 1024, 16 heads of 64, MLP 4096, llama3-scaled RoPE, transformers'
``LlamaModel`` as ``tfmr``) that never sees its own token embeddings: the multilingual release
(``t3_mtl23ls_v2.safetensors``) brings a 2454-token text vocabulary and an 8194-token speech
vocabulary (S3 tokens 0..6560, start-of-speech 6561, stop 6562, spare ids to 8193), each with its own
embedding, learned absolute position embedding (text 2050 positions, speech 4100) and output head.
The sequence is

    [conditioning (34 vectors, see t3_conditioning)] [start-text, text..., stop-text] [start-speech]

and speech tokens are drawn one at a time after it, each fed back at the next speech position.

Drawing follows upstream's multilingual ``generate``: classifier-free guidance with weight 0.5 from a
second batch row whose text token embeddings (not their positions) are zeroed, ``cond + w (cond -
uncond)``; then :mod:`t3_alignment`'s guard against hallucinated tails; a repetition penalty of 2.0
on every speech token so far (start-of-speech included; positive logits divided, negative
multiplied); temperature 0.8; min-p 0.05 (drop tokens under 5% of the top probability); top-p 1.0;
a multinomial draw; up to 1000 tokens, ending at the stop token.

Attribute names are upstream's, so :func:`load_t3` loads the released file's 292 tensors (no prefix)
into ``T3()`` (535,989,248 parameters) with ``strict=True``. Differences from upstream:

- Upstream feeds start-of-speech twice, both at speech position 0 (once from ``prepare_input_embeds``,
  once more before its sampling loop), and the first token is drawn after the second. This is kept,
  since the released weights are only known to behave with it.
- ``cfg_weight=0`` runs the conditional row alone; upstream runs both rows and then ignores the
  unconditional one. Negative weights are refused (upstream gives them no effect).
- ``temperature=0`` draws greedily (upstream divides by it). Logits are processed in float32
  whatever the model's dtype, and ``generator`` may fix the draw (else torch's global RNG, as upstream).
- :meth:`T3.generate` takes one text (as ``MultilingualTokenizer.t3_text_ids`` frames it, start and
  stop included) and builds the unconditional row itself (upstream's caller stacks the text twice).
  It returns the drawn speech tokens without the stop token (upstream returns it; its caller cuts it
  with ``drop_invalid_tokens``, which would also cut everything up to a drawn start-of-speech token;
  that clean-up, and dropping tokens 6563..8193 that S3Gen cannot read, stays with the caller).
- One utterance per call, as upstream's sampling loop supports. Its training ``forward``/``loss``, the
  GPT-2 backbone and ``inference_turbo`` of Chatterbox Turbo, and its progress bar are not ported.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import torch
from torch import nn
from transformers import LlamaConfig, LlamaModel
from transformers.cache_utils import DynamicCache
from transformers.models.llama.modeling_llama import LlamaRotaryEmbedding

from model_registry.networks.chatterbox._strict_load import load_exact
from model_registry.networks.chatterbox.t3_alignment import (
    ALIGNMENT_HEADS,
    AlignmentStreamAnalyzer,
    aligned_attention,
)
from model_registry.networks.chatterbox.t3_conditioning import T3Cond, T3CondEnc

__all__ = ("T3", "T3Cond", "T3Config", "load_t3")


@dataclass(frozen=True)
class T3Config:
    """T3's geometry and special tokens; the defaults are the multilingual release (upstream's
    ``T3Config.multilingual()`` with its "Llama_520M" backbone)."""

    text_tokens_dict_size: int = 2454
    start_text_token: int = 255
    stop_text_token: int = 0
    max_text_tokens: int = 2048
    speech_tokens_dict_size: int = 8194
    start_speech_token: int = 6561
    stop_speech_token: int = 6562
    max_speech_tokens: int = 4096
    speech_cond_prompt_len: int = 150
    speaker_embed_size: int = 256
    perceiver_queries: int = 32
    perceiver_heads: int = 4
    hidden_size: int = 1024
    intermediate_size: int = 4096
    num_hidden_layers: int = 30
    num_attention_heads: int = 16
    head_dim: int = 64
    # (layer, head) pairs the hallucination guard reads; () turns the guard off.
    alignment_heads: tuple[tuple[int, int], ...] = ALIGNMENT_HEADS

    def llama_config(self) -> LlamaConfig:
        return LlamaConfig(
            # The backbone's own token embedding is never used but is in the checkpoint: 8 rows.
            vocab_size=8,
            max_position_embeddings=131072,
            hidden_size=self.hidden_size,
            intermediate_size=self.intermediate_size,
            num_hidden_layers=self.num_hidden_layers,
            num_attention_heads=self.num_attention_heads,
            num_key_value_heads=self.num_attention_heads,
            head_dim=self.head_dim,
            hidden_act="silu",
            attention_bias=False,
            mlp_bias=False,
            rms_norm_eps=1e-5,
            rope_parameters={
                "rope_type": "llama3",
                "rope_theta": 500000.0,
                "factor": 8.0,
                "low_freq_factor": 1.0,
                "high_freq_factor": 4.0,
                "original_max_position_embeddings": 8192,
            },
            tie_word_embeddings=False,
            attn_implementation="sdpa",
        )


class _LearnedPositions(nn.Module):
    """Absolute position embeddings, indexed from 0 (upstream's ``LearnedPositionEmbeddings``)."""

    def __init__(self, length: int, channels: int):
        super().__init__()
        self.emb = nn.Embedding(length, channels)
        nn.init.normal_(self.emb.weight, std=0.02)

    def forward(self, positions: torch.Tensor | int) -> torch.Tensor:
        """(..., channels) embeddings of ``positions``; an int n means positions 0..n-1."""
        if isinstance(positions, int):
            positions = torch.arange(positions, device=self.emb.weight.device)
        return self.emb(positions)


class T3(nn.Module):
    """The token language model; ``T3()`` is the released multilingual geometry."""

    def __init__(self, config: T3Config | None = None):
        super().__init__()
        self.config = config = config if config is not None else T3Config()
        width = config.hidden_size
        self.tfmr = LlamaModel(config.llama_config())
        self.cond_enc = T3CondEnc(width, config.speaker_embed_size, config.perceiver_queries, config.perceiver_heads)
        self.text_emb = nn.Embedding(config.text_tokens_dict_size, width)
        self.speech_emb = nn.Embedding(config.speech_tokens_dict_size, width)
        # Upstream's sizes: text framed by start and stop, speech with two spare positions more.
        self.text_pos_emb = _LearnedPositions(config.max_text_tokens + 2, width)
        self.speech_pos_emb = _LearnedPositions(config.max_speech_tokens + 4, width)
        self.text_head = nn.Linear(width, config.text_tokens_dict_size, bias=False)
        self.speech_head = nn.Linear(width, config.speech_tokens_dict_size, bias=False)

    @property
    def device(self) -> torch.device:
        return self.speech_head.weight.device

    def prepare_conditioning(self, cond: T3Cond) -> torch.Tensor:
        """(1, n_cond, hidden) conditioning vectors of one voice. Prompt speech tokens beyond
        ``speech_cond_prompt_len`` are cut, keeping the first."""
        weight = self.speech_head.weight
        speaker = torch.as_tensor(cond.speaker_emb).to(device=weight.device, dtype=weight.dtype)
        if speaker.numel() != self.config.speaker_embed_size:
            raise ValueError(
                f"speaker_emb of shape {tuple(speaker.shape)}: expected one {self.config.speaker_embed_size}-dim vector"
            )
        prompt_emb = None
        if cond.cond_prompt_speech_tokens is not None:
            prompt = torch.atleast_2d(torch.as_tensor(cond.cond_prompt_speech_tokens)).to(weight.device).long()
            if prompt.ndim != 2 or prompt.shape[0] != 1:
                raise ValueError(f"cond_prompt_speech_tokens of shape {tuple(prompt.shape)}: expected one sequence")
            prompt = prompt[:, : self.config.speech_cond_prompt_len]
            if prompt.numel():
                _check_range(prompt, self.config.speech_tokens_dict_size, "cond_prompt_speech_tokens")
                prompt_emb = self.speech_emb(prompt) + self.speech_pos_emb(prompt.shape[1])
        emotion = torch.as_tensor(cond.emotion_adv).to(device=weight.device, dtype=weight.dtype)
        return self.cond_enc(speaker, prompt_emb, emotion.reshape(1))

    def prepare_input_embeds(
        self, text_tokens: torch.Tensor, cond: T3Cond, speech_tokens: torch.Tensor, guided: bool = False
    ) -> torch.Tensor:
        """(B, n_cond + T + S, hidden) inputs for framed ``text_tokens`` (1, T) and ``speech_tokens``
        (1, S), both from position 0. ``guided`` adds the unconditional row (B = 2): the same
        conditioning and speech, the text's token embeddings zeroed but not its positions."""
        conditioning = self.prepare_conditioning(cond)
        text = self.text_emb(text_tokens)
        if guided:
            text = torch.cat([text, torch.zeros_like(text)])
        text = text + self.text_pos_emb(text_tokens.shape[1])
        speech = self.speech_emb(speech_tokens) + self.speech_pos_emb(speech_tokens.shape[1])
        batch = text.shape[0]
        return torch.cat(
            [conditioning.expand(batch, -1, -1), text, speech.expand(batch, -1, -1)],
            dim=1,
        )

    @torch.inference_mode()
    def generate(
        self,
        text_tokens: torch.Tensor,
        cond: T3Cond,
        *,
        max_new_tokens: int = 1000,
        temperature: float = 0.8,
        cfg_weight: float = 0.5,
        min_p: float = 0.05,
        top_p: float = 1.0,
        repetition_penalty: float = 2.0,
        generator: torch.Generator | None = None,
        alignment_guard: bool = True,
    ) -> torch.Tensor:
        """The (N,) speech tokens for ``text_tokens`` ((T,) or (1, T) text ids between the start and
        stop text tokens, as ``MultilingualTokenizer.t3_text_ids`` gives them) in the voice ``cond``,
        without the stop token; N <= ``max_new_tokens``.

        Defaults are upstream's multilingual ``generate``. ``temperature=0`` is greedy.
        ``alignment_guard`` runs the hallucination guard when the config names alignment heads.
        """
        config = self.config
        _check_sampling(max_new_tokens, temperature, cfg_weight, min_p, top_p, repetition_penalty, config)
        text = self._text_ids(text_tokens)
        guided = cfg_weight > 0
        start = torch.full((1, 1), config.start_speech_token, device=self.device)
        prompt = self.prepare_input_embeds(text, cond, start, guided)
        batch, n_cond = prompt.shape[0], prompt.shape[1] - text.shape[1] - 1
        # Upstream's second start-of-speech input, again at speech position 0.
        inputs = torch.cat([prompt, self._speech_input(start, 0, batch)], dim=1)

        guard = None
        if alignment_guard and config.alignment_heads:
            guard = AlignmentStreamAnalyzer((n_cond, n_cond + text.shape[1]), config.stop_speech_token)
        cache = DynamicCache(config=self.tfmr.config)
        seen = torch.zeros(config.speech_tokens_dict_size, dtype=torch.bool, device=self.device)
        seen[config.start_speech_token] = True
        last_token = config.start_speech_token
        drawn: list[int] = []
        for step in range(max_new_tokens):
            out = self.tfmr(
                inputs_embeds=inputs, past_key_values=cache, use_cache=True, output_hidden_states=guard is not None
            )
            logits = self.speech_head(out.last_hidden_state[:, -1]).float()
            if guided:
                conditional, unconditional = logits[:1], logits[1:]
                logits = conditional + cfg_weight * (conditional - unconditional)
            if guard is not None:
                attention = aligned_attention(self.tfmr, out.hidden_states, cache, config.alignment_heads)
                logits = guard.step(logits, attention, last_token)
            token = _draw(logits, seen, temperature, min_p, top_p, repetition_penalty, generator)
            if token == config.stop_speech_token:
                break
            drawn.append(token)
            seen[token] = True
            last_token = token
            inputs = self._speech_input(torch.full((1, 1), token, device=self.device), step + 1, batch)
        return torch.tensor(drawn, dtype=torch.long, device=self.device)

    def _speech_input(self, token: torch.Tensor, position: int, batch: int) -> torch.Tensor:
        embedded = self.speech_emb(token) + self.speech_pos_emb.emb.weight[position]
        return embedded.expand(batch, -1, -1)

    def _text_ids(self, text_tokens: torch.Tensor) -> torch.Tensor:
        """``text_tokens`` as a checked (1, T) long tensor on the model's device."""
        config = self.config
        tokens = torch.atleast_2d(torch.as_tensor(text_tokens)).to(self.device).long()
        if tokens.ndim != 2 or tokens.shape[0] != 1:
            raise ValueError(f"text_tokens of shape {tuple(tokens.shape)}: expected one sequence")
        if tokens.shape[1] < 2 or tokens[0, 0] != config.start_text_token or tokens[0, -1] != config.stop_text_token:
            raise ValueError(
                f"text_tokens must run from the start text token {config.start_text_token} to the stop text"
                f" token {config.stop_text_token} (MultilingualTokenizer.t3_text_ids adds them)"
            )
        if tokens.shape[1] > config.max_text_tokens + 2:
            raise ValueError(f"{tokens.shape[1] - 2} text tokens, more than T3's {config.max_text_tokens}")
        _check_range(tokens, config.text_tokens_dict_size, "text_tokens")
        return tokens


def _draw(
    logits: torch.Tensor,
    seen: torch.Tensor,
    temperature: float,
    min_p: float,
    top_p: float,
    repetition_penalty: float,
    generator: torch.Generator | None,
) -> int:
    """One token from (1, V) float32 logits, processed in upstream's order (the effects of
    transformers' repetition-penalty, min-p and top-p processors)."""
    penalized = torch.where(logits < 0, logits * repetition_penalty, logits / repetition_penalty)
    logits = torch.where(seen, penalized, logits)
    if temperature == 0:
        return int(logits.argmax())
    if temperature != 1.0:
        logits = logits / temperature
    if min_p > 0:
        probs = logits.softmax(dim=-1)
        logits = logits.masked_fill(probs < min_p * probs.amax(dim=-1, keepdim=True), float("-inf"))
    # At 1.0, top-p could only drop tokens whose probability is already zero: skipped.
    if top_p < 1:
        ascending, order = logits.sort(dim=-1)
        drop = ascending.softmax(dim=-1).cumsum(dim=-1) <= 1 - top_p
        drop[..., -1] = False
        logits = logits.masked_fill(drop.scatter(-1, order, drop), float("-inf"))
    return int(torch.multinomial(logits.softmax(dim=-1), 1, generator=generator))


def _check_sampling(
    max_new_tokens: int,
    temperature: float,
    cfg_weight: float,
    min_p: float,
    top_p: float,
    repetition_penalty: float,
    config: T3Config,
) -> None:
    # The last drawn token is fed back at speech position max_new_tokens - 1.
    if not 0 <= max_new_tokens <= config.max_speech_tokens:
        raise ValueError(f"max_new_tokens must lie in [0, {config.max_speech_tokens}], got {max_new_tokens}")
    if temperature < 0:
        raise ValueError(f"temperature must be >= 0, got {temperature}")
    if cfg_weight < 0:
        raise ValueError(f"cfg_weight must be >= 0, got {cfg_weight}")
    if not 0 <= min_p <= 1:
        raise ValueError(f"min_p must lie in [0, 1], got {min_p}")
    if not 0 < top_p <= 1:
        raise ValueError(f"top_p must lie in (0, 1], got {top_p}")
    if repetition_penalty <= 0:
        raise ValueError(f"repetition_penalty must be > 0, got {repetition_penalty}")


def _check_range(tokens: torch.Tensor, vocab: int, name: str) -> None:
    if tokens.numel() and (tokens.min() < 0 or tokens.max() >= vocab):
        raise ValueError(f"{name} must lie in [0, {vocab}), got {int(tokens.min())}..{int(tokens.max())}")


def load_t3(
    state_dict: Mapping[str, torch.Tensor],
    prefix: str = "",
    dtype: torch.dtype = torch.float32,
    config: T3Config | None = None,
) -> T3:
    """T3 in eval mode from the entries of ``state_dict`` under ``prefix`` (the released
    ``t3_mtl23ls_v2.safetensors`` has none; other entries are ignored), floating weights cast to
    ``dtype``. ``config`` is the geometry (the release by default).

    Every weight must be present, with its shape, and nothing else under the prefix; a
    ``ValueError`` names what is missing, unexpected or misshapen.
    """
    config = config if config is not None else T3Config()
    model = load_exact(lambda: T3(config), state_dict, prefix, "a T3", dtype)
    # RoPE's frequencies are a computed buffer, not in the checkpoint: compute them for real.
    model.tfmr.rotary_emb = LlamaRotaryEmbedding(config=model.tfmr.config)
    return model.eval()
