"""Inference in its own process (Settings.isolate_executor): jobs run there, and a job that kills it
is failed with the reason and refunded while the API stays up and the next job runs in a new process."""

from __future__ import annotations

import io
import os
import signal

import pytest
from PIL import Image

from tests.conftest import running_api
from tests.test_transforms import tiny_models_config, transform_models  # noqa: F401  (the session fixture)

@pytest.fixture
def isolated_settings(settings, transform_models):  # noqa: F811
    settings.home.mkdir(parents=True, exist_ok=True)
    settings.config_file.write_text(tiny_models_config(transform_models))
    return settings.model_copy(update={"isolate_executor": True})


def png(side: int = 96) -> bytes:
    buffer = io.BytesIO()
    Image.effect_noise((side, side), 64).convert("RGB").save(buffer, "PNG")
    return buffer.getvalue()


def upscale(api) -> str:
    response = api.post("img-upscale", files={"image": ("in.png", png(), "image/png")}, data={"model": "TinyESRGAN"})
    assert response.status_code == 200, response.json()
    return response.json()["data"]["request_id"]


def test_jobs_run_in_the_inference_process(isolated_settings):
    with running_api(isolated_settings) as api:
        status = api.wait(upscale(api), timeout=120)
        assert status["status"] == "done", status
        isolated = api.engine.worker.isolated
        assert isolated is not None and isolated.pid not in (None, os.getpid())
        resident = api.engine.worker.resident()
        assert [m.slug for m in resident] == ["TinyESRGAN"] and resident[0].memory_bytes > 0


def test_a_job_that_kills_the_process_is_failed_refunded_and_the_api_goes_on(isolated_settings):
    with running_api(isolated_settings, tier="premium", balance=1.0) as api:
        worker = api.engine.worker
        assert api.wait(upscale(api), timeout=120)["status"] == "done"  # the model loads in the first process
        killed_pid = worker.isolated.pid
        before = api.get("balance").json()["data"]["balance"]
        make_reporter = worker._progress_reporter

        def killing_reporter(job):
            report = make_reporter(job)

            def kill_then_report(*args, **kwargs):
                os.kill(killed_pid, signal.SIGKILL)  # a native crash, mid-job
                return report(*args, **kwargs)

            return kill_then_report

        worker._progress_reporter = killing_reporter
        status = api.wait(upscale(api), timeout=120)
        assert status["status"] == "error" and status["error_code"] == "PROCESSING_ERROR", status
        assert "inference process died (signal 9)" in status["error_message"] and "not retried" in status["error_message"]
        assert api.get("balance").json()["data"]["balance"] == pytest.approx(before)  # refunded

        worker._progress_reporter = make_reporter
        again = api.wait(upscale(api), timeout=120)  # the model loads again, in a new process
        assert again["status"] == "done", again
        assert worker.isolated.generation == 1 and worker.isolated.pid not in (None, killed_pid)
        owner = {"Authorization": f"Bearer {api.new_key('owner')}"}  # /metrics wants the machine owner's key
        metrics = api.client.get("/metrics", headers=owner).text
        assert "drylocal_inference_process_deaths_total 1.0" in metrics
        state = api.client.get("/dashboard/state", headers=api.headers).json()
        assert state["memory"]["inference_process_deaths"] == 1


def test_a_process_over_its_memory_limit_is_stopped_and_the_job_fails_as_out_of_memory(isolated_settings):
    tight = isolated_settings.model_copy(update={"executor_memory_limit_bytes": 64 * 1024 * 1024})
    with running_api(tight) as api:
        status = api.wait(upscale(api), timeout=120)
        assert status["status"] == "error" and status["error_code"] == "OUT_OF_MEMORY", status
        assert "over its limit of 0.1 GiB" in status["error_message"]
        assert api.get("balance").status_code == 200


def test_the_job_time_limit_stops_a_job_in_the_inference_process(isolated_settings):
    with running_api(isolated_settings.model_copy(update={"job_time_limit_seconds": 1e-6})) as api:
        status = api.wait(upscale(api), timeout=120)
        assert status["status"] == "error" and status["error_code"] == "WORKER_TIMEOUT", status
