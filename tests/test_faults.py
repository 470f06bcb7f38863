"""Faults inside one server: a job that runs out of memory, a disk that fills while a result is
written. The job fails with a clear code, nothing half-made is left, and the next job runs."""

from __future__ import annotations

import errno

import pytest

from engine.results import ResultStore
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
        monkeypatch.setattr(type(EMBEDDINGS), "run", lambda self, model, params, inputs, progress: self.run_batch(model, [params])[0])
    failed = api.wait(api.post("txt2embedding", json=BODY).json()["data"]["request_id"])
    assert failed["status"] == "error" and failed["error_code"] == "OUT_OF_MEMORY"
    assert "MiniLM_L6_v2 ran out of memory" in failed["error_message"]
    eventually(lambda: api.engine.worker.resident() == [])  # unloaded, its memory given back
    assert api.wait(api.post("txt2embedding", json=BODY).json()["data"]["request_id"])["status"] == "done"
    assert api.engine.worker.loads == 2


def test_a_full_disk_fails_the_job_and_leaves_no_partial_result(api, monkeypatch):
    original = ResultStore.write

    def full_disk(self, job_id, filename, data):
        folder = self.root / job_id
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"{filename}.part").write_bytes(data[:10])
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(ResultStore, "write", full_disk)
    request_id = api.post("txt2embedding", json=BODY).json()["data"]["request_id"]
    failed = api.wait(request_id)
    assert failed["status"] == "error" and failed["error_code"] == "PROCESSING_ERROR"
    assert "No space left on device" in failed["error_message"]
    assert not (api.engine.settings.results_dir / request_id).exists()

    monkeypatch.setattr(ResultStore, "write", original)  # space freed: work goes on
    assert api.wait(api.post("txt2embedding", json=BODY).json()["data"]["request_id"])["status"] == "done"
    job = api.engine.jobs.get(request_id)
    assert job.status == "error" and job.result_file is None
