"""Several devices: which one each job goes to (engine/dispatcher.py), then two simulated devices behind the
HTTP API. No GPU here: devices are CPU budgets, as a two-card machine would be two CUDA budgets."""

from __future__ import annotations

import random

from engine.devices import DeviceBudget
from engine.dispatcher import HOLD, DeviceView, Dispatcher, dispatch

GB = 1_000_000_000


def device(held=0, idle=0, resident=False, need=4 * GB, queued=0, budget=10 * GB, refused=False):
    return DeviceView(budget, held, idle, resident, need, queued, refused)


def test_a_device_with_the_model_resident_wins_shortest_queue_first():
    views = [device(held=8 * GB, resident=True, queued=3), device(), device(held=8 * GB, resident=True, queued=1)]
    assert dispatch(views) == 2


def test_else_where_it_fits_in_free_memory_the_least_busy_first():
    views = [device(held=8 * GB, idle=8 * GB), device(held=2 * GB, queued=2), device(held=5 * GB, queued=1)]
    assert dispatch(views) == 2


def test_else_where_it_fits_once_idle_models_leave():
    views = [device(held=8 * GB, idle=0), device(held=8 * GB, idle=5 * GB, queued=4)]
    assert dispatch(views) == 1


def test_else_it_is_held_until_a_device_changes_or_it_waited_too_long():
    views = [device(held=8 * GB, idle=0, queued=2), device(held=9 * GB, idle=0, queued=1)]
    assert dispatch(views, waited=5, max_wait=30) == HOLD
    assert dispatch(views, waited=30, max_wait=30) == 1


def test_a_job_too_big_for_every_device_goes_to_the_largest_which_fails_it():
    views = [device(need=20 * GB), device(need=20 * GB, budget=16 * GB), device(refused=True, budget=24 * GB)]
    assert dispatch(views) == 2


def test_a_device_where_the_model_has_no_placement_is_passed_over():
    assert dispatch([device(refused=True), device(held=9 * GB, idle=9 * GB, queued=5)]) == 1


def test_randomised_routes_only_where_a_job_fits_alone_and_nothing_waits_past_max_wait():
    rng = random.Random(19)
    for _ in range(2000):
        views = [
            device(
                held=(held := rng.randint(0, 10) * GB), idle=rng.randint(0, held // GB) * GB, resident=rng.random() < 0.2,
                need=rng.randint(1, 14) * GB, queued=rng.randint(0, 5), budget=rng.choice((10, 12, 24)) * GB,
                refused=rng.random() < 0.1,
            )
            for _ in range(rng.randint(1, 4))
        ]
        waited = rng.uniform(0, 60)
        target = dispatch(views, waited, max_wait=30)
        fits = [v for v in views if not v.refused and v.need_bytes <= v.budget_bytes]
        if not fits:
            assert views[target].budget_bytes == max(v.budget_bytes for v in views)
            continue
        if target == HOLD:
            assert waited < 30
            assert not any(v.resident or v.need_bytes <= v.budget_bytes - v.held_bytes + v.idle_bytes for v in fits)
            continue
        chosen = views[target]
        assert not chosen.refused and chosen.need_bytes <= chosen.budget_bytes


def test_the_dispatcher_holds_and_routes_oldest_first_when_a_device_changes():
    state = {"full": True}
    sent = []
    clock = [0.0]
    views = lambda item: [device(held=9 * GB if state["full"] else 0, idle=0)]  # noqa: E731
    dispatcher = Dispatcher(views, lambda index, item: sent.append((index, item)), max_wait=30, clock=lambda: clock[0])
    dispatcher.submit("a")
    dispatcher.submit("b")
    assert sent == [] and dispatcher.held == 2
    state["full"] = False
    dispatcher.retry()
    assert sent == [(0, "a"), (0, "b")] and dispatcher.held == 0
    state["full"] = True
    dispatcher.submit("c")
    clock[0] = 31.0
    dispatcher.retry()
    assert sent[-1] == (0, "c")


# ---------------------------------------------------------------- two devices behind the API
def test_two_devices_keep_two_models_resident_side_by_side(settings):
    """Each of two models fills one device: on one device they would swap at every job; on two each stays put."""
    from tests.conftest import running_api
    from tests.test_lifecycle import add_models, embed

    add_models(settings, {"EmbedA": {}, "EmbedB": {}})
    devices = [DeviceBudget("cpu", 150_000_000, 150_000_000) for _ in range(2)]
    with running_api(settings, budget=devices) as api:
        for model in ["EmbedA", "EmbedB", "EmbedA", "EmbedB", "EmbedA"]:
            assert api.wait(embed(api, model).json()["data"]["request_id"])["status"] == "done"
        workers = api.engine.workers
        assert sorted(m.slug for w in workers for m in w.resident()) == ["EmbedA", "EmbedB"]
        assert [len(w.resident()) for w in workers] == [1, 1]
        assert sum(w.loads for w in workers) == 2 and sum(w.evictions for w in workers) == 0
        serving = api.engine.serving()
        assert serving.loads == 2 and serving.device == "cpu, cpu" and serving.budget_bytes == 300_000_000
