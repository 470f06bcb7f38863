"""Faults inside one server: a job that runs out of memory, a disk that fills while a result is
written. The job fails with a clear code, nothing half-made is left, and the next job runs."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from engine import results as results_module
from engine.tasks.txt2embedding import PIPELINE as EMBEDDINGS
from tests.conftest import eventually, running_api

BODY = {"input": "a sentence to embed", "model": "MiniLM_L6_v2"}


class SimulatedOutOfMemory(RuntimeError):
    """What torch raises on a GPU (torch.OutOfMemoryError); named so the worker recognises it."""


SimulatedOutOfMemory.__name__ = "OutOfMemoryError"


def fail_once(monkeypatch, owner, name: str, error: BaseException) -> None:
    original = getattr(owner, name)
    calls = {"n": 0}

    def flaky(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 1:
            raise error
        return original(*args, **kwargs)

    monkeypatch.setattr(owner, name, flaky)


@pytest.mark.parametrize("method", ["run", "run_batch"])
def test_out_of_memory_fails_the_job_unloads_the_model_and_the_next_job_runs(api, monkeypatch, method):
    fail_once(monkeypatch, type(EMBEDDINGS), method, SimulatedOutOfMemory("CUDA out of memory. Tried to allocate 2.00 GiB"))
    if method == "run_batch":
        monkeypatch.setattr(type(EMBEDDINGS), "run", lambda self, model, params, progress: self.run_batch(model, [params])[0])
    failed = api.wait(api.post("txt2embedding", json=BODY).json()["data"]["request_id"])
    assert failed["status"] == "error" and failed["error_code"] == "OUT_OF_MEMORY"
    assert "MiniLM_L6_v2 ran out of memory" in failed["error_message"]
    eventually(lambda: api.engine.worker.resident() == [])  # unloaded, its memory given back
    assert api.wait(api.post("txt2embedding", json=BODY).json()["data"]["request_id"])["status"] == "done"
    assert api.engine.worker.loads == 2


class FullDisk:
    """A file whose disk fills halfway through a write: the first half lands, then ENOSPC."""

    def __init__(self, handle, seen) -> None:
        self._handle, self._seen = handle, seen

    def write(self, data) -> int:
        self._handle.write(data[: len(data) // 2])
        self._handle.flush()
        self._seen(Path(self._handle.name))
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    def __getattr__(self, name):
        return getattr(self._handle, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self._handle.close()


def visible(folder: Path) -> dict[str, int]:
    return {p.name: p.stat().st_size for p in folder.iterdir()} if folder.is_dir() else {}


@pytest.mark.parametrize("fault", ["disk fills mid-write", "rename fails"])
def test_a_storage_fault_below_the_result_writer_fails_the_job_and_never_shows_a_partial_result(api, monkeypatch, fault):
    """The real ResultStore.write_all, with the fault in the calls it makes: its file's write, or the rename."""
    at_fault: list[dict[str, int]] = []
    results_dir = api.engine.settings.results_dir
    if fault == "disk fills mid-write":
        real_open = open

        def filling_open(path, mode="r", *args, **kwargs):
            handle = real_open(path, mode, *args, **kwargs)
            if Path(path).is_relative_to(results_dir) and "w" in mode:
                return FullDisk(handle, lambda written: at_fault.append(visible(written.parent)))
            return handle

        monkeypatch.setattr(results_module, "open", filling_open, raising=False)
        reason = os.strerror(errno.ENOSPC)
    else:
        real_replace = os.replace

        def failing_replace(src, dst, *args, **kwargs):
            if Path(dst).is_relative_to(results_dir):
                at_fault.append(visible(Path(dst).parent))
                raise OSError(errno.EIO, os.strerror(errno.EIO))
            return real_replace(src, dst, *args, **kwargs)

        monkeypatch.setattr(os, "replace", failing_replace)
        reason = os.strerror(errno.EIO)
    request_id = api.post("txt2embedding", json=BODY).json()["data"]["request_id"]
    failed = api.wait(request_id)
    assert failed["status"] == "error" and failed["error_code"] == "PROCESSING_ERROR"
    assert reason in failed["error_message"] and "could not be stored" in failed["error_message"]
    # While the fault happened, only the temporary file held bytes: nothing under the result's own name.
    ((seen,),) = [list(listing.items()) for listing in at_fault]
    assert seen[0].endswith(".part") and seen[1] > 0
    job = api.engine.jobs.get(request_id)
    assert job.status == "error" and job.result_file is None
    assert not (results_dir / request_id).exists()  # and the temporary file is gone too

    monkeypatch.undo()  # space freed: work goes on, through the same writer
    done = api.wait(api.post("txt2embedding", json=BODY).json()["data"]["request_id"])
    assert done["status"] == "done"
    assert not list(results_dir.glob("*/*.part"))
