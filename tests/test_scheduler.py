"""Scheduling decisions on models of known sizes: evictions, ordering, max wait, never over budget."""

import random

from engine.scheduler import QueuedJob, ResidentModel, expired_models, plan

GB = 1_000_000_000


def job(job_id, model, need, at=0.0, batchable=False, size=1, task="txt2img"):
    return QueuedJob(job_id, model, task, need, at, batchable, size)


def test_resident_model_runs_without_load():
    decision = plan([job("j1", "A", 4 * GB)], [ResidentModel("A", 4 * GB, 0.0)], 10 * GB, 1.0, 30)
    assert decision.run == ("j1",) and not decision.load and not decision.evict


def test_model_that_fits_is_loaded_beside_others():
    decision = plan([job("j1", "B", 4 * GB)], [ResidentModel("A", 4 * GB, 0.0)], 10 * GB, 1.0, 30)
    assert decision.load and decision.model == "B" and decision.evict == ()


def test_idle_models_are_evicted_least_recently_used_first():
    resident = [ResidentModel("A", 4 * GB, last_used=5.0), ResidentModel("B", 4 * GB, last_used=1.0)]
    decision = plan([job("j1", "C", 5 * GB)], resident, 10 * GB, 10.0, 30)
    assert decision.evict == ("B",) and decision.load


def test_models_in_use_are_never_evicted():
    resident = [ResidentModel("A", 6 * GB, last_used=0.0, leases=1)]
    decision = plan([job("j1", "B", 6 * GB)], resident, 10 * GB, 10.0, 30)
    assert decision.run == () and decision.evict == ()


def test_resident_job_overtakes_one_that_needs_a_swap():
    queue = [job("old", "B", 8 * GB, at=0.0), job("new", "A", 4 * GB, at=1.0)]
    decision = plan(queue, [ResidentModel("A", 4 * GB, 0.0)], 10 * GB, 5.0, max_wait=30)
    assert decision.run == ("new",) and not decision.load


def test_max_wait_bounds_overtaking():
    queue = [job("old", "B", 8 * GB, at=0.0), job("new", "A", 4 * GB, at=1.0)]
    decision = plan(queue, [ResidentModel("A", 4 * GB, 0.0)], 10 * GB, 31.0, max_wait=30)
    assert decision.run == ("old",) and decision.load and decision.evict == ("A",)


def test_model_bigger_than_the_budget_fails_its_job():
    decision = plan([job("huge", "X", 50 * GB), job("ok", "A", 1 * GB)], [], 10 * GB, 0.0, 30)
    assert [job_id for job_id, _ in decision.fail] == ["huge"]
    assert "more than the whole memory budget" in decision.fail[0][1]
    assert decision.run == ("ok",)


def test_batchable_jobs_of_one_model_run_together_up_to_the_limit():
    queue = [job(f"e{i}", "E", GB, at=i, batchable=True, size=3, task="txt2embedding") for i in range(5)]
    queue.insert(2, job("other", "F", GB, at=1.5, batchable=True, task="txt2embedding"))
    decision = plan(queue, [ResidentModel("E", GB, 0.0)], 10 * GB, 6.0, 30, max_batch=9)
    assert decision.run == ("e0", "e1", "e2")


def test_keep_alive_semantics():
    resident = [
        ResidentModel("never", GB, last_used=0.0, keep_alive=-1),
        ResidentModel("now", GB, last_used=100.0, keep_alive=0),
        ResidentModel("later", GB, last_used=90.0, keep_alive=60),
        ResidentModel("old", GB, last_used=0.0, keep_alive=60),
        ResidentModel("busy", GB, last_used=0.0, keep_alive=0, leases=1),
    ]
    assert sorted(expired_models(resident, now=100.0)) == ["now", "old"]


def test_applying_plans_never_exceeds_the_budget():
    rng = random.Random(7)
    sizes = {name: rng.randint(1, 9) * GB for name in "ABCDEFG"}
    budget = 12 * GB
    resident: dict[str, ResidentModel] = {}
    queue = [job(f"j{i}", rng.choice("ABCDEFG"), 0, at=i) for i in range(300)]
    queue = [QueuedJob(q.job_id, q.model, q.task, sizes[q.model], q.enqueued_at) for q in queue]
    now, ran = 0.0, 0
    while queue:
        now += 1
        decision = plan(queue, list(resident.values()), budget, now, max_wait=5)
        assert decision.run, "a job that fits alone must always be able to run when nothing is in use"
        for slug in decision.evict:
            del resident[slug]
        if decision.load:
            resident[decision.model] = ResidentModel(decision.model, sizes[decision.model], now)
        assert sum(m.memory_bytes for m in resident.values()) <= budget
        queue = [q for q in queue if q.job_id not in decision.run]
        resident[decision.model] = ResidentModel(decision.model, sizes[decision.model], now)
        ran += len(decision.run)
    assert ran == 300
