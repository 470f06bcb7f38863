"""The order memory is given back in (issue 14, item 7): what a model holds is unreferenced before the
allocator is emptied, a failed load's leftovers are released outside the except block whose traceback
pins them, and the allocator is emptied before free memory is probed."""

from __future__ import annotations

import gc
import time
import weakref

import pytest

import engine.worker
from engine.devices import DeviceBudget
from model_registry import ModelRegistry, WeightsLocator
from tests.conftest import running_api
from tests.test_lifecycle import embed


class Weights:
    """Stands for a pipeline's tensors: alive while anything references it."""


@pytest.fixture
def releases(monkeypatch):
    """Each call of the worker's release, with whether the watched weights were still alive then."""
    watched: list[weakref.ref] = []
    seen: list[bool] = []

    def recording_release(device: str) -> None:
        gc.collect()
        seen.append(any(ref() is not None for ref in watched))

    monkeypatch.setattr(engine.worker, "_release_memory", recording_release)
    return watched, seen


def test_a_failed_loads_leftovers_are_unreferenced_when_memory_is_released(settings, releases):
    watched, seen = releases

    def failing_load(spec, device, placement):
        weights = Weights()  # what the load built before it failed: held by the traceback's frame
        watched.append(weakref.ref(weights))
        raise RuntimeError("the checkpoint is truncated")

    with running_api(settings, load_fn=failing_load) as api:
        status = api.wait(embed(api, "MiniLM_L6_v2").json()["data"]["request_id"])
        assert status["status"] == "error" and "truncated" in status["error_message"]
    assert seen and seen[0] is False


def test_what_a_model_keeps_beside_its_handle_is_let_go_before_the_release(settings, releases):
    watched, seen = releases
    registry = ModelRegistry.from_files(WeightsLocator(settings.models_dir), settings.config_file)

    def load_with_extras(spec, device, placement):
        loaded = registry.load(spec, "cpu", placement)
        weights = Weights()  # a condition pipeline or batched decoder sharing the model's weights
        loaded.extras["condition_pipeline"] = weights
        watched.append(weakref.ref(weights))
        return loaded

    with running_api(settings.model_copy(update={"keep_alive_seconds": 0}), load_fn=load_with_extras) as api:
        assert api.wait(embed(api, "MiniLM_L6_v2").json()["data"]["request_id"])["status"] == "done"
        api.engine.worker._wake.set()
        deadline = time.monotonic() + 10
        while not seen and time.monotonic() < deadline:
            time.sleep(0.05)
    assert seen and seen[0] is False  # the unload's release found the extras already dropped


def test_the_allocator_is_emptied_before_free_memory_is_probed(settings, monkeypatch):
    order: list[str] = []
    monkeypatch.setattr(engine.worker, "_release_memory", lambda device: order.append("release"))

    def probe() -> int:
        order.append("probe")
        return 10**12

    with running_api(settings, budget=DeviceBudget("cpu", 10**9, 10**9, probe_free=probe)) as api:
        assert api.wait(embed(api, "MiniLM_L6_v2").json()["data"]["request_id"])["status"] == "done"
    assert order[:2] == ["release", "probe"]
