"""What a pass costs the event loop around it: its jobs start and end in slices with the loop free between
them, its events reach each subscriber as one hand-over, and the queue view looks again only at what changed."""

import asyncio

import pytest

from engine import Engine
from engine.database import Database
from engine.devices import DeviceBudget
from engine.events import EventBus, JobEvent
from engine.jobs import JobStore
from engine.accounts import AccountStore
from engine.results import ResultStore
from engine.settings import Settings
from engine.worker import GpuWorker
from model_registry import ModelRegistry, WeightsLocator

MODEL = "MiniLM_L6_v2"


async def test_a_big_pass_starts_and_ends_its_jobs_in_slices_with_the_loop_free_between(tmp_path):
    """70 one-text jobs queued at once run as one pass; before, their 70 starts and 70 ends each held the loop
    in one go (up to 50 ms with 256), so every request that came meanwhile waited for all of them."""
    settings = Settings.load(home=tmp_path / "home", port=8000, isolate_executor=False)
    ticks = 0
    calls: dict[str, list[tuple[int, int]]] = {"start_all": [], "complete_all": []}

    async def tick() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0)
            ticks += 1

    async with Engine.open(settings) as engine:
        for name, calls_of in calls.items():
            original = getattr(engine.jobs, name)
            setattr(engine.jobs, name, lambda batch, original=original, calls_of=calls_of: (calls_of.append((len(batch), ticks)), original(batch))[1])
        seen: dict[str, list[str]] = {}

        async def record(event: JobEvent) -> None:
            seen.setdefault(event.job_id, []).append(event.status)

        engine.subscribe(record)
        account = engine.accounts.create_account("passes")
        spec = engine.registry.get(MODEL)
        ticker = asyncio.create_task(tick())
        # Submitted together: the intake writes and queues them in one step, before the worker's next turn.
        jobs = await asyncio.gather(
            *(engine.submit(account, "txt2embedding", spec, {"input": f"text {i}", "tokens": 3}) for i in range(70))
        )
        deadline = asyncio.get_running_loop().time() + 120
        while any(engine.jobs.get(job.id).status != "done" for job in jobs) or len(seen) < 70 or any(len(s) < 2 for s in seen.values()):
            assert asyncio.get_running_loop().time() < deadline, "the pass did not end"
            await asyncio.sleep(0.05)
        ticker.cancel()
    for name, calls_of in calls.items():
        sizes = [size for size, _ in calls_of]
        assert sum(sizes) == 70 and max(sizes) <= 32 and sizes == sorted(sizes, reverse=True), (name, sizes)
        assert all(later > earlier for (_, earlier), (_, later) in zip(calls_of, calls_of[1:])), f"{name}: no turn of the loop between slices"
    assert all(statuses == ["processing", "done"] for statuses in seen.values())


async def test_a_batch_of_events_reaches_each_subscriber_in_order_past_one_that_fails():
    bus = EventBus()
    bus.bind(asyncio.get_running_loop())
    got: list[str] = []

    async def fussy(event: JobEvent) -> None:
        if event.job_id == "b":
            raise RuntimeError("this one only")
        got.append(event.job_id)

    bus.subscribe(fussy)
    bus.publish_all([JobEvent(job_id, "acct", "txt2embedding", "done", "processing", 100.0) for job_id in "abc"])
    for _ in range(5):
        await asyncio.sleep(0)
    assert got == ["a", "c"]


def test_the_queue_view_follows_a_new_measurement_and_figures_the_jobs_queued_since(tmp_path):
    settings = Settings.load(home=tmp_path / "home", port=8000, isolate_executor=False)
    settings.ensure_dirs()
    db = Database(settings.db_path)
    jobs = JobStore(db)
    account = AccountStore(db).create_account("view")
    registry = ModelRegistry.from_files(WeightsLocator(settings.models_dir), settings.config_file)
    worker = GpuWorker(registry, jobs, ResultStore(settings.results_dir), EventBus(), DeviceBudget("cpu", 10**10, 10**10), settings)

    def queue(count: int) -> None:
        for i in range(count):
            worker.enqueue(jobs.create(account, task="txt2embedding", model=MODEL, params={"input": f"t{i}", "tokens": 2}, inputs={}, price=0.0))

    queue(3)
    first = worker._queue_view()
    assert len(first) == 3 and len({q.need_bytes for q in first}) == 1 and first[0].need_bytes > 0
    worker.measured[MODEL] = first[0].need_bytes + 12345  # the model measured once loaded
    queue(2)
    again = worker._queue_view()
    assert [q.need_bytes for q in again] == [first[0].need_bytes + 12345] * 5
    queue(1)  # nothing changed but a new job: it is figured too
    assert [q.need_bytes for q in worker._queue_view()] == [first[0].need_bytes + 12345] * 6
    db.close()


async def test_when_a_later_slice_cannot_start_the_jobs_started_before_it_still_run(tmp_path):
    """A slice's start failing (the database refusing a write) leaves the slices before it marked processing:
    they run in this pass instead of waiting, processing, for a restart."""
    settings = Settings.load(home=tmp_path / "home", port=8000, isolate_executor=False)
    async with Engine.open(settings) as engine:
        original, calls = engine.jobs.start_all, []

        def second_refused(batch):
            calls.append(len(batch))
            if len(calls) == 2:
                raise OSError("disk I/O error")
            return original(batch)

        engine.jobs.start_all = second_refused
        account = engine.accounts.create_account("refused")
        spec = engine.registry.get(MODEL)
        jobs = await asyncio.gather(
            *(engine.submit(account, "txt2embedding", spec, {"input": f"text {i}", "tokens": 3}) for i in range(40))
        )
        deadline = asyncio.get_running_loop().time() + 120
        while sum(engine.jobs.get(job.id).status == "done" for job in jobs) < 32:
            assert asyncio.get_running_loop().time() < deadline, [engine.jobs.get(job.id).status for job in jobs]
            await asyncio.sleep(0.05)
        statuses = [engine.jobs.get(job.id).status for job in jobs]
    assert calls[:2] == [32, 8]
    assert statuses == ["done"] * 32 + ["pending"] * 8
