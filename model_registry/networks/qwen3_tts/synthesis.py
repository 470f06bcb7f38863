"""Qwen3-TTS from text to codec frames: the prompt each checkpoint type expects, and the sampling loop.

A released checkpoint is one of three types (config ``tts_model_type``): ``custom_voice`` (named
preset speakers, optional style instruction), ``voice_design`` (the voice described by an
instruction) and ``base`` (a voice cloned from reference audio through the speaker encoder, and when
the reference transcript is given, in context from the reference's own codec frames).

The prompt is built as upstream builds it (same token order, same sums of text and codec
embeddings), so a released checkpoint hears what it was trained on:

    [instruction]  <|im_start|>assistant\\n
    codec control: think / think_bos / [language] / think_eos / [speaker] / pad  (each + tts_pad,
                   the last + tts_bos), then the text:
    non-streaming: every text token + codec_pad, tts_eos + codec_pad, then tts_pad + codec_bos
    streaming:     the first text token + codec_bos; the rest are added one per generated frame

Sampling follows upstream's generation settings: repetition penalty on the first codes already
generated, the top 1024 codec ids (control tokens) suppressed except end-of-speech, no end before
two frames, then temperature, top-k and top-p; the predictor samples its codes with its own settings.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, NamedTuple

import torch
from transformers.generation.logits_process import (
    LogitsProcessorList,
    MinNewTokensLengthLogitsProcessor,
    RepetitionPenaltyLogitsProcessor,
    SuppressTokensLogitsProcessor,
    TemperatureLogitsWarper,
    TopKLogitsWarper,
    TopPLogitsWarper,
)

from model_registry.networks.qwen3_tts.talker import Talker

__all__ = ("Prompt", "Sampling", "VoicePrompt", "build_prompt", "frame_budget", "generate_frames")

FRAME_RATE = 12.5


@dataclass(frozen=True)
class Sampling:
    do_sample: bool = True
    top_k: int = 50
    top_p: float = 1.0
    temperature: float = 0.9
    repetition_penalty: float = 1.05
    subtalker_dosample: bool = True
    subtalker_top_k: int = 50
    subtalker_top_p: float = 1.0
    subtalker_temperature: float = 0.9
    max_new_tokens: int = 2048

    @classmethod
    def from_generation_config(cls, values: dict[str, Any]) -> "Sampling":
        known = {name: values[name] for name in cls.__dataclass_fields__ if values.get(name) is not None}
        return cls(**known)


class Prompt(NamedTuple):
    prefill: torch.Tensor
    trailing: torch.Tensor
    pad: torch.Tensor


@dataclass
class VoicePrompt:
    """What conditions the voice: a preset speaker id, or a cloned speaker's embedding, and for
    in-context cloning the reference transcript's token ids and the reference audio's codec frames."""

    speaker_id: int | None = None
    speaker_embedding: torch.Tensor | None = None
    ref_ids: torch.Tensor | None = None
    ref_frames: torch.Tensor | None = None
    instruct_ids: torch.Tensor | None = None


def build_prompt(
    talker: Talker, tokens: dict[str, int], text_ids: torch.Tensor, language_id: int | None, voice: VoicePrompt,
    non_streaming: bool,
) -> Prompt:
    """(prefill embeddings (1, n, hidden), text still to feed one per frame (1, m, hidden), tts_pad).

    ``text_ids`` is the whole ``<|im_start|>assistant\\n{text}<|im_end|>\\n<|im_start|>assistant\\n``
    tokenization: three role tokens in front, five closing tokens behind.
    """
    s = talker.settings
    device = text_ids.device

    def ids(values: list[int]) -> torch.Tensor:
        return torch.tensor([values], device=device, dtype=torch.long)

    tts_bos, tts_eos, tts_pad = talker.text(ids([tokens["tts_bos"], tokens["tts_eos"], tokens["tts_pad"]])).chunk(3, dim=1)
    if language_id is None:
        control = [s["codec_nothink_id"], s["codec_think_bos_id"], s["codec_think_eos_id"]]
    else:
        control = [s["codec_think_id"], s["codec_think_bos_id"], language_id, s["codec_think_eos_id"]]
    codec_parts = [talker.codec(ids(control))]
    if voice.speaker_embedding is not None:
        codec_parts.append(voice.speaker_embedding.view(1, 1, -1).to(tts_pad.dtype))
    elif voice.speaker_id is not None:
        codec_parts.append(talker.codec(ids([voice.speaker_id])))
    codec_parts.append(talker.codec(ids([s["codec_pad_id"], s["codec_bos_id"]])))
    codec = torch.cat(codec_parts, dim=1)

    parts = []
    if voice.instruct_ids is not None:
        parts.append(talker.text(voice.instruct_ids))
    parts.append(talker.text(text_ids[:, :3]))
    parts.append(torch.cat([tts_pad.expand(-1, codec.shape[1] - 2, -1), tts_bos], dim=1) + codec[:, :-1])
    body = text_ids[:, 3:-5]

    if voice.ref_frames is not None and voice.ref_ids is not None:
        # In-context cloning: the reference transcript then the new text, against the reference's frames.
        text = torch.cat([talker.text(torch.cat([voice.ref_ids[:, 3:-2], body], dim=-1)), tts_eos], dim=1)
        frames = torch.cat([talker.codec(ids([s["codec_bos_id"]])), talker.frames_embedding(voice.ref_frames)], dim=1)
        if non_streaming:
            parts.append(text + talker.codec(ids([s["codec_pad_id"]] * text.shape[1])))
            parts.append(frames + tts_pad)
            return Prompt(torch.cat(parts, dim=1), tts_pad, tts_pad)
        if text.shape[1] > frames.shape[1]:
            parts.append(text[:, : frames.shape[1]] + frames)
            return Prompt(torch.cat(parts, dim=1), text[:, frames.shape[1] :], tts_pad)
        text = torch.cat([text, tts_pad.expand(-1, frames.shape[1] - text.shape[1], -1)], dim=1)
        parts.append(text + frames)
        return Prompt(torch.cat(parts, dim=1), tts_pad, tts_pad)

    if non_streaming:
        text = torch.cat([talker.text(body), tts_eos], dim=1)
        parts.append(text + talker.codec(ids([s["codec_pad_id"]] * text.shape[1])))
        parts.append(tts_pad + talker.codec(ids([s["codec_bos_id"]])))
        return Prompt(torch.cat(parts, dim=1), tts_pad, tts_pad)
    parts.append(talker.text(text_ids[:, 3:4]) + codec[:, -1:])
    return Prompt(torch.cat(parts, dim=1), torch.cat([talker.text(text_ids[:, 4:-5]), tts_eos], dim=1), tts_pad)


def _chooser(do_sample: bool, top_k: int, top_p: float, temperature: float, extra: list | None = None):
    processors = LogitsProcessorList(extra or [])
    if do_sample:
        if temperature and temperature != 1.0:
            processors.append(TemperatureLogitsWarper(temperature))
        if top_k:
            processors.append(TopKLogitsWarper(top_k=top_k))
        if top_p is not None and top_p < 1.0:
            processors.append(TopPLogitsWarper(top_p=top_p))

    def choose(history: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
        scores = processors(history, logits.float())
        if do_sample:
            return torch.multinomial(torch.softmax(scores, dim=-1), num_samples=1).view(1)
        return scores.argmax(dim=-1).view(1)

    return choose


@torch.inference_mode()
def generate_frames(
    talker: Talker, prompt: Prompt, sampling: Sampling, max_frames: int,
    progress: Callable[[int], None] | None = None,
) -> torch.Tensor:
    """Codec frames (n, groups) until the end-of-speech code or ``max_frames``.

    After the prompt, each frame's input is its codes' embeddings plus the next text still to feed,
    or tts_pad once the text is used up."""
    from transformers.cache_utils import DynamicCache

    s = talker.settings
    prefill, trailing, pad = prompt
    eos = int(s["codec_eos_token_id"])
    vocab = talker.config.vocab_size
    suppressed = [i for i in range(vocab - 1024, vocab) if i != eos]
    device = prefill.device
    first = _chooser(
        sampling.do_sample, sampling.top_k, sampling.top_p, sampling.temperature,
        [
            RepetitionPenaltyLogitsProcessor(penalty=float(sampling.repetition_penalty)),
            MinNewTokensLengthLogitsProcessor(prompt_length_to_skip=0, min_new_tokens=2, eos_token_id=eos, device=device),
            SuppressTokensLogitsProcessor(suppressed, device=device),
        ],
    )
    rest = _chooser(sampling.subtalker_dosample, sampling.subtalker_top_k, sampling.subtalker_top_p,
                    sampling.subtalker_temperature)
    no_history = torch.zeros((1, 0), dtype=torch.long, device=device)

    cache = DynamicCache(config=talker.config)
    hidden = talker.model.run(prefill, cache)
    history = no_history
    frames: list[torch.Tensor] = []
    for step in range(min(max_frames, sampling.max_new_tokens)):
        code = first(history, talker.codec_head(hidden[:, -1]))
        if int(code) == eos:
            break
        history = torch.cat([history, code.view(1, 1)], dim=1)
        others = talker.code_predictor.predict(hidden[:, -1:], talker.codec(code.view(1, 1)), lambda logits, k: rest(no_history, logits))
        frame = torch.cat([code, *others])
        frames.append(frame)
        if progress is not None:
            progress(len(frames))
        text = trailing[:, step : step + 1] if step < trailing.shape[1] else pad
        hidden = talker.model.run(talker.frame_embedding(frame) + text, cache)
    if not frames:
        return torch.zeros((0, talker.groups), dtype=torch.long, device=device)
    return torch.stack(frames)


def frame_budget(text: str, limit: int) -> int:
    """Frames allowed for ``text``: generous for slow speech (a quarter second a character, plus three
    seconds), so a sampled run that never says end-of-speech still stops."""
    return max(2, min(limit, math.ceil(FRAME_RATE * (3.0 + 0.25 * len(text)))))
