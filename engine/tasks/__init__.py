"""One pipeline per dryAPI task, all behind one small protocol.

A pipeline module exposes ``PIPELINE``, an object with:
    batchable: bool
    run(model, params, inputs, progress) -> TaskResult
    run_batch(model, items) -> list[TaskResult]      (only when batchable)
where ``model`` is the LoadedModel from the registry, ``inputs`` maps upload fields to file paths, and
``progress(pct, preview_jpeg=None)`` reports progress (and, for images and video, a small preview).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Protocol

from model_registry import LoadedModel

__all__ = ("PIPELINES", "TASK_INFERENCE_TYPE", "Pipeline", "Progress", "TaskResult", "pipeline_for")

# Route name (the job's ``task``) -> the models' inference type that serves it.
TASK_INFERENCE_TYPE: dict[str, str] = {
    "txt2img": "txt2img",
    "img2img": "img2img",
    "txt2video": "txt2video",
    "img2video": "img2video",
    "aud2video": "aud2video",
    "txt2audio": "txt2audio",
    "txt2music": "txt2music",
    "txt2embedding": "txt2embedding",
    "img2txt": "img2txt",
    "vid2txt": "video2text",
    "aud2txt": "audio2text",
    "videofile2txt": "video_file2text",
    "audiofile2txt": "audio_file2text",
    "img-rmbg": "img-rmbg",
    "img-upscale": "img-upscale",
    "prompt-booster": "prompt-booster",
}

# Task -> "module:attribute" of its pipeline, imported on first use.
PIPELINES: dict[str, str] = {
    "txt2embedding": "engine.tasks.txt2embedding:PIPELINE",
    "txt2img": "engine.tasks.txt2img:PIPELINE",
    "img2img": "engine.tasks.img2img:PIPELINE",
    "txt2video": "engine.tasks.video:PIPELINE",
    "img2video": "engine.tasks.video:PIPELINE",
    "aud2video": "engine.tasks.video:PIPELINE",
    "img-upscale": "engine.tasks.img_upscale:PIPELINE",
    "img-rmbg": "engine.tasks.img_rmbg:PIPELINE",
    "txt2audio": "engine.tasks.txt2audio:PIPELINE",
    "txt2music": "engine.tasks.txt2music:PIPELINE",
    "img2txt": "engine.tasks.img2txt:PIPELINE",
    "prompt-booster": "engine.tasks.prompt_booster:PIPELINE",
    "vid2txt": "engine.tasks.transcribe:PIPELINE",
    "aud2txt": "engine.tasks.transcribe:PIPELINE",
    "audiofile2txt": "engine.tasks.transcribe:PIPELINE",
    "videofile2txt": "engine.tasks.transcribe:PIPELINE",
}

Progress = Callable[..., None]


@dataclass
class TaskResult:
    data: bytes
    """The result file's bytes."""
    filename: str
    content_type: str
    text: str | None = None
    """Inline result for ``return_result_in_response`` (text, or JSON for structured results)."""
    alt_formats: dict[str, bytes] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)
    """Facts worth keeping with the job (seed used, detected language, token count...)."""


class Pipeline(Protocol):
    batchable: bool

    def run(self, model: LoadedModel, params: dict[str, Any], inputs: dict[str, Path], progress: Progress) -> TaskResult: ...

    def run_batch(self, model: LoadedModel, items: list[dict[str, Any]]) -> list[TaskResult]: ...


def pipeline_for(task: str) -> Pipeline | None:
    target = PIPELINES.get(task)
    if target is None:
        return None
    module_name, _, attr = target.partition(":")
    return getattr(importlib.import_module(module_name), attr)
