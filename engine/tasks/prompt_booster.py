"""The prompt boosters: a small instruct LLM rewrites a prompt for an image, video or speech model.

The model is asked for JSON; a small model does not always comply, so whatever it says is parsed
leniently, and when nothing usable comes back the user's own prompt is returned unchanged rather
than failing the request.
"""

from __future__ import annotations

import json
import re
from typing import Any

import msgspec

from engine.tasks._definition import Progress, Task, TaskResult
from model_registry import LoadedModel
from model_registry.kinds import InstructModel

__all__ = ("BOOSTER_TASKS", "TASK", "BoosterParams", "parse_answer")


class BoosterParams(msgspec.Struct, kw_only=True):
    """Checked by the booster routes themselves (server/routes/prompts.py): their bodies are their own."""

    booster: str
    """Which route asked: prompt/image, prompt/video, prompt/image2image, prompt/speech, prompts/samples."""
    prompt: str | None = None
    negative_prompt: str | None = None
    lang_code: str | None = None
    type: str | None = None
    topic: str | None = None
    seed: int | None = None

_IMAGE = (
    "You improve prompts for a text-to-image model. Rewrite the user's prompt into one vivid, concrete "
    "description (subject, setting, lighting, style, composition), at most 80 words. Also write a short "
    'negative prompt of things to avoid. Answer only with JSON: {"prompt": "...", "negative_prompt": "..."}'
)
_VIDEO = (
    "You improve prompts for a text-to-video model. Rewrite the user's prompt into one description of a "
    "short shot: subject, motion, camera movement, setting, lighting, at most 80 words. Also write a short "
    'negative prompt. Answer only with JSON: {"prompt": "...", "negative_prompt": "..."}'
)
_EDIT = (
    "You improve instructions for an image-editing model. Rewrite the user's edit instruction so it says "
    "precisely what to change and what to keep, at most 60 words. Also write a short negative prompt. "
    'Answer only with JSON: {"prompt": "...", "negative_prompt": "..."}'
)
_SPEECH = (
    "You prepare text for a text-to-speech model. Rewrite the user's text so it reads naturally aloud: "
    "spell out numbers and abbreviations, fix punctuation for pauses, keep the meaning and the language"
    '{lang}. Answer only with JSON: {{"prompt": "..."}}'
)
_SAMPLES = {
    "text2image": 'Write one creative, detailed prompt for a text-to-image model{topic}. Answer only with JSON: {{"prompt": "..."}}',
    "text2speech": 'Write two or three natural sentences for a text-to-speech demo{topic}{lang}. Answer only with JSON: {{"prompt": "..."}}',
}

BOOSTER_TASKS = ("prompt/image", "prompt/video", "prompt/image2image", "prompt/speech", "prompts/samples")
MAX_NEW_TOKENS = 220


def _messages(task: str, params: BoosterParams) -> list[dict[str, str]]:
    lang = f" ({params.lang_code})" if params.lang_code else ""
    if task == "prompts/samples":
        topic = f" about {params.topic}" if params.topic else ""
        system = _SAMPLES[params.type].format(topic=topic, lang=lang)
        return [{"role": "system", "content": system}, {"role": "user", "content": "Go."}]
    system = {"prompt/image": _IMAGE, "prompt/video": _VIDEO, "prompt/image2image": _EDIT}.get(task) or _SPEECH.format(lang=lang)
    user = params.prompt or ""
    if params.negative_prompt:
        user += f"\nAvoid: {params.negative_prompt}"
    return [{"role": "system", "content": system}, {"role": "user", "content": user}]


def parse_answer(text: str) -> dict[str, str]:
    """The JSON object in the model's answer, or its plain text as the prompt."""
    match = re.search(r"\{.*\}", text, re.DOTALL)
    if match:
        try:
            found = json.loads(match.group(0))
        except ValueError:
            found = None
        if isinstance(found, dict):
            return {k: v.strip() for k, v in found.items() if k in ("prompt", "negative_prompt") and isinstance(v, str) and v.strip()}
    plain = text.strip().strip('"').strip()
    return {"prompt": plain} if plain else {}


def _generate(model: LoadedModel[InstructModel], messages: list[dict[str, str]], seed: int | None) -> str:
    import torch

    llm, tokenizer = model.handle
    inputs = tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt", return_dict=True)
    inputs = {k: v.to(llm.device) for k, v in inputs.items()}
    if seed is not None:
        torch.manual_seed(int(seed))
    with torch.inference_mode():
        output = llm.generate(
            **inputs,
            max_new_tokens=MAX_NEW_TOKENS,
            do_sample=False,
            pad_token_id=tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id,
        )
    return tokenizer.decode(output[0, inputs["input_ids"].shape[1] :], skip_special_tokens=True)


class PromptBooster:
    batchable = False

    def run(self, model: LoadedModel[InstructModel], params: BoosterParams, progress: Progress) -> TaskResult:
        task = params.booster
        answer = parse_answer(_generate(model, _messages(task, params), params.seed))
        if task == "prompts/samples":
            body: dict[str, Any] = {"type": params.type, "prompt": answer.get("prompt", "")}
        elif task == "prompt/speech":
            body = {"prompt": answer.get("prompt") or params.prompt}
        else:
            body = {
                "prompt": answer.get("prompt") or params.prompt,
                "negative_prompt": answer.get("negative_prompt") or params.negative_prompt,
            }
        text = json.dumps(body, ensure_ascii=False)
        return TaskResult(data=text.encode(), filename="result.json", content_type="application/json", text=text)


TASK = Task(
    name="prompt-booster",
    label="Prompt Booster",
    group="prompts",
    inference_type="prompt-booster",
    params=BoosterParams,
    check=lambda ctx: None,
    pipeline=PromptBooster(),
    rate_limit=None,
    routes=False,
)
