"""The task modules are the one definition of each task: what is derived from them covers every one."""

from __future__ import annotations

import pkgutil
import re
from pathlib import Path

import msgspec

import engine.tasks
from engine.rate_limits import bucket_for, default_limits
from engine.tasks import TASKS
from server.mcp import TOOLS

TASK_FOLDER = Path(engine.tasks.__file__).parent


def test_every_public_module_of_engine_tasks_declares_one_task():
    modules = [m.name for m in pkgutil.iter_modules([str(TASK_FOLDER)]) if not m.name.startswith("_")]
    assert sorted(TASKS[name].name.replace("/", "_").replace("-", "_") for name in TASKS) == sorted(modules)


def test_an_upload_is_never_a_required_struct_field():
    """The job store keeps the checked values without the uploads: a file field's requirement is the form's."""
    for task in TASKS.values():
        files = {field.name for field in task.fields if field.kind in ("file", "files")}
        required = {field.name for field in msgspec.structs.fields(task.params) if field.required}
        assert not files & required, task.name


def test_rate_limits_and_mcp_tools_cover_every_routed_task():
    limits = default_limits()
    for task in TASKS.values():
        if not task.routes:
            continue
        assert bucket_for(task.name, "basic") in limits["basic"], task.name
        assert bucket_for(task.name, "premium") in limits["premium"], task.name
        assert bucket_for(f"{task.name}/{task.price_route}", "basic") == "price-calculation", task.name
        assert task.mcp is not None and TOOLS[task.mcp.name] is task, task.name


def test_pipelines_read_typed_parameters_not_dicts():
    for path in TASK_FOLDER.glob("*.py"):
        assert not re.search(r"params\[[\"']", path.read_text()), path.name


def test_one_file_sent_as_a_list_field_reaches_the_pipeline_as_a_list():
    """``images[]`` with a single file is stored as one path (engine._save_inputs); img2img still gets a list."""
    params = TASKS["img2img"].typed({"prompt": "x", "seed": 1, "steps": 4}, {"images": "/inputs/images_0.png"})
    assert params.images == [Path("/inputs/images_0.png")]


def test_only_small_json_requests_without_files_or_media_urls_are_checked_on_the_event_loop():
    embed, transcribe = TASKS["txt2embedding"], TASKS["transcribe"]
    assert embed.checks_quickly({"input": "hi"}, {}, size=40)
    assert not embed.checks_quickly({"input": "hi " * 2000}, {}, size=6000)  # tokenizing that takes a while
    assert not TASKS["img2img"].checks_quickly({"prompt": "p"}, {"image": ["file"]}, size=0)
    assert transcribe.checks_quickly({"model": "WhisperBase"}, {}, size=40)
    assert not transcribe.checks_quickly({"source_url": "https://www.youtube.com/watch?v=x"}, {}, size=60)
