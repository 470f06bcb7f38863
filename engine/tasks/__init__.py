"""The dryAPI tasks: one module each (``txt2img.py``: its fields, checks, price inputs, limits, MCP tool
and pipeline, declared as ``TASK``); modules whose names start with ``_`` hold what tasks share.

Everything else is derived from :data:`TASKS`: the routes and their OpenAPI operations, the MCP tools,
the rate-limit tables, the inference-type map and the worker's pipelines. Adding a task is adding a
module here.
"""

from __future__ import annotations

import importlib
import pkgutil

from engine.tasks._definition import (
    AUDIO_POLLING,
    IMAGE_POLLING,
    SENT,
    VIDEO_POLLING,
    BatchPipeline,
    Form,
    McpTool,
    Pipeline,
    Progress,
    Task,
    TaskResult,
)
from engine.tasks._validation import Validated, validate

__all__ = (
    "AUDIO_POLLING",
    "IMAGE_POLLING",
    "SENT",
    "TASKS",
    "VIDEO_POLLING",
    "BatchPipeline",
    "Form",
    "McpTool",
    "Pipeline",
    "Progress",
    "Task",
    "TaskResult",
    "Validated",
    "task_named",
    "validate",
)


def _discover() -> dict[str, Task]:
    found: dict[str, Task] = {}
    for module in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        if module.name.startswith("_"):
            continue
        task = importlib.import_module(f"{__name__}.{module.name}").TASK
        if task.name in found:
            raise RuntimeError(f"task {task.name} is declared twice")
        found[task.name] = task
    return found


TASKS: dict[str, Task] = _discover()


def task_named(name: str) -> Task | None:
    return TASKS.get(name)
