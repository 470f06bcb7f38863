"""The Qwen3-TTS talker: a Qwen3 decoder that writes codec frames, and its code predictor.

Each 80 ms frame of the 12 Hz codec has ``num_code_groups`` (16) codes. The talker reads the prompt
(text embeddings projected to its width, summed with codec control embeddings) and predicts a frame's
first code; the code predictor, a five-layer Qwen3 decoder started afresh for every frame from the
talker's last hidden state and that first code, predicts the other fifteen, one head each. The sum of
the frame's sixteen code embeddings plus the next text embedding is the talker's next input.

The decoder layers, norms and rotary embedding are transformers' Qwen3 classes, so attention goes
through whatever transformers dispatches to (SDPA by default). Upstream gives the talker Qwen2.5-Omni's
three-stream ("mrope") rotary positions; speech has no image or video grid, so the three streams are
always equal and the rotation is exactly Qwen3's one-dimensional one, which is what this module uses.

Attribute names follow the released checkpoints (``talker.model.layers.0.self_attn.q_proj.weight``,
``talker.code_predictor.lm_head.3.weight``, ...), so their ``model.safetensors`` loads with strict=True.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from transformers import Qwen3Config
from transformers.activations import ACT2FN
from transformers.cache_utils import DynamicCache
from transformers.masking_utils import create_causal_mask
from transformers.models.qwen3.modeling_qwen3 import Qwen3DecoderLayer, Qwen3RMSNorm, Qwen3RotaryEmbedding

__all__ = ("CodePredictor", "Talker", "decoder_config")

# Upstream's Qwen3TTSTalkerConfig / Qwen3TTSTalkerCodePredictorConfig defaults, for keys a config.json omits.
TALKER_DEFAULTS: dict[str, Any] = {
    "vocab_size": 3072, "hidden_size": 1024, "intermediate_size": 2048, "num_hidden_layers": 20,
    "num_attention_heads": 16, "num_key_value_heads": 2, "hidden_act": "silu", "max_position_embeddings": 32768,
    "rms_norm_eps": 1e-6, "rope_theta": 10000, "attention_bias": False, "num_code_groups": 32,
    "text_hidden_size": 2048, "text_vocab_size": 151936, "codec_eos_token_id": 4198, "codec_think_id": 4202,
    "codec_nothink_id": 4203, "codec_think_bos_id": 4204, "codec_think_eos_id": 4205, "codec_pad_id": 4196,
    "codec_bos_id": 4197,
}
PREDICTOR_DEFAULTS: dict[str, Any] = {
    "vocab_size": 2048, "hidden_size": 1024, "intermediate_size": 3072, "num_hidden_layers": 5,
    "num_attention_heads": 16, "num_key_value_heads": 8, "head_dim": 128, "hidden_act": "silu",
    "max_position_embeddings": 32768, "rms_norm_eps": 1e-6, "rope_theta": 10000, "attention_bias": False,
    "num_code_groups": 32,
}


def _rope_theta(section: dict[str, Any], default: float) -> float:
    parameters = section.get("rope_parameters") or {}
    return float(parameters.get("rope_theta", section.get("rope_theta", default)))


def decoder_config(section: dict[str, Any], defaults: dict[str, Any]) -> Qwen3Config:
    """A Qwen3Config for one of the two decoders, from its section of the checkpoint's config.json."""
    merged = {**defaults, **{k: v for k, v in section.items() if v is not None}}
    heads = int(merged["num_attention_heads"])
    config = Qwen3Config(
        vocab_size=int(merged["vocab_size"]),
        hidden_size=int(merged["hidden_size"]),
        intermediate_size=int(merged["intermediate_size"]),
        num_hidden_layers=int(merged["num_hidden_layers"]),
        num_attention_heads=heads,
        num_key_value_heads=int(merged["num_key_value_heads"] or heads),
        head_dim=int(merged.get("head_dim") or int(merged["hidden_size"]) // heads),
        hidden_act=merged["hidden_act"],
        max_position_embeddings=int(merged["max_position_embeddings"]),
        rms_norm_eps=float(merged["rms_norm_eps"]),
        rope_parameters={"rope_type": "default", "rope_theta": _rope_theta(section, defaults["rope_theta"])},
        attention_bias=bool(merged["attention_bias"]),
        use_sliding_window=False,
    )
    config._attn_implementation = "sdpa"
    return config


class DecoderStack(nn.Module):
    """Qwen3 decoder layers over given input embeddings (no token embedding of its own)."""

    def __init__(self, config: Qwen3Config) -> None:
        super().__init__()
        self.config = config
        self.layers = nn.ModuleList(Qwen3DecoderLayer(config, index) for index in range(config.num_hidden_layers))
        self.norm = Qwen3RMSNorm(config.hidden_size, eps=config.rms_norm_eps)
        self.rotary_emb = Qwen3RotaryEmbedding(config)

    def run(self, embeds: torch.Tensor, cache: DynamicCache) -> torch.Tensor:
        """Normed hidden states of ``embeds`` (1, n, hidden), continuing the sequence held in ``cache``."""
        start = cache.get_seq_length()
        positions = torch.arange(start, start + embeds.shape[1], device=embeds.device).unsqueeze(0)
        mask = create_causal_mask(
            config=self.config, inputs_embeds=embeds, attention_mask=None, past_key_values=cache, position_ids=positions
        )
        rotary = self.rotary_emb(embeds, positions)
        hidden = embeds
        for layer in self.layers:
            hidden = layer(hidden, attention_mask=mask, position_embeddings=rotary, position_ids=positions,
                           past_key_values=cache, use_cache=True)
        return self.norm(hidden)


class TalkerBackbone(DecoderStack):
    def __init__(self, config: Qwen3Config, text_vocab_size: int, text_hidden_size: int) -> None:
        super().__init__(config)
        self.codec_embedding = nn.Embedding(config.vocab_size, config.hidden_size)
        self.text_embedding = nn.Embedding(text_vocab_size, text_hidden_size)


class PredictorBackbone(DecoderStack):
    def __init__(self, config: Qwen3Config, groups: int, embedding_dim: int) -> None:
        super().__init__(config)
        # Code k (k >= 1) of a frame is embedded by table k - 1, at the talker's width.
        self.codec_embedding = nn.ModuleList(nn.Embedding(config.vocab_size, embedding_dim) for _ in range(groups - 1))


class ResizeMLP(nn.Module):
    """Text embeddings (text_hidden_size) to the talker's width."""

    def __init__(self, size_in: int, size_mid: int, size_out: int, act: str) -> None:
        super().__init__()
        self.linear_fc1 = nn.Linear(size_in, size_mid, bias=True)
        self.linear_fc2 = nn.Linear(size_mid, size_out, bias=True)
        self.act_fn = ACT2FN[act]

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.linear_fc2(self.act_fn(self.linear_fc1(hidden)))


class CodePredictor(nn.Module):
    def __init__(self, config: Qwen3Config, groups: int, talker_hidden: int) -> None:
        super().__init__()
        self.groups = groups
        self.model = PredictorBackbone(config, groups, talker_hidden)
        self.lm_head = nn.ModuleList(nn.Linear(config.hidden_size, config.vocab_size, bias=False) for _ in range(groups - 1))
        self.small_to_mtp_projection = (
            nn.Linear(talker_hidden, config.hidden_size, bias=True) if config.hidden_size != talker_hidden else nn.Identity()
        )

    def predict(self, talker_hidden: torch.Tensor, first_code_embed: torch.Tensor, choose) -> list[torch.Tensor]:
        """Codes 1..groups-1 of a frame; ``choose(logits, k)`` picks code k from its logits (1, vocab)."""
        cache = DynamicCache(config=self.model.config)
        inputs = self.small_to_mtp_projection(torch.cat([talker_hidden, first_code_embed], dim=1))
        codes: list[torch.Tensor] = []
        for k in range(self.groups - 1):
            hidden = self.model.run(inputs, cache)
            code = choose(self.lm_head[k](hidden[:, -1]), k)
            codes.append(code)
            if k < self.groups - 2:
                inputs = self.small_to_mtp_projection(self.model.codec_embedding[k](code.view(1, 1)))
        return codes


class Talker(nn.Module):
    """``talker.*`` of the checkpoint; built from the config.json's ``talker_config`` section."""

    def __init__(self, section: dict[str, Any]) -> None:
        super().__init__()
        merged = {**TALKER_DEFAULTS, **{k: v for k, v in section.items() if v is not None}}
        self.settings = merged
        self.config = decoder_config(section, TALKER_DEFAULTS)
        predictor = decoder_config(section.get("code_predictor_config") or {}, PREDICTOR_DEFAULTS)
        self.groups = int(merged["num_code_groups"])
        hidden, text_hidden = self.config.hidden_size, int(merged["text_hidden_size"])
        self.model = TalkerBackbone(self.config, int(merged["text_vocab_size"]), text_hidden)
        self.text_projection = ResizeMLP(text_hidden, text_hidden, hidden, merged["hidden_act"])
        self.codec_head = nn.Linear(hidden, self.config.vocab_size, bias=False)
        self.code_predictor = CodePredictor(predictor, self.groups, hidden)

    def text(self, ids: torch.Tensor) -> torch.Tensor:
        """Text token ids (1, n) as talker inputs (1, n, hidden)."""
        return self.text_projection(self.model.text_embedding(ids))

    def codec(self, ids: torch.Tensor) -> torch.Tensor:
        return self.model.codec_embedding(ids)

    def frame_embedding(self, frame: torch.Tensor) -> torch.Tensor:
        """The summed embeddings of one frame's codes (groups,) -> (1, 1, hidden)."""
        total = self.codec(frame[:1].view(1, 1))
        for k in range(1, self.groups):
            total = total + self.code_predictor.model.codec_embedding[k - 1](frame[k : k + 1].view(1, 1))
        return total

    def frames_embedding(self, frames: torch.Tensor) -> torch.Tensor:
        """(n, groups) codes -> (1, n, hidden), each row the sum of its codes' embeddings."""
        total = self.codec(frames[:, 0]).unsqueeze(0)
        for k in range(1, self.groups):
            total = total + self.code_predictor.model.codec_embedding[k - 1](frames[:, k]).unsqueeze(0)
        return total
