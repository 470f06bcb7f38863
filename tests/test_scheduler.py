"""Scheduling decisions on models of known sizes: evictions, ordering, max wait, never over budget."""

import random

from engine.scheduler import ParkedModel, QueuedJob, ResidentModel, expired_models, plan

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


# ---------------------------------------------------------------- the host-RAM tier


def test_evicted_model_that_can_move_is_parked_not_dropped():
    resident = [ResidentModel("A", 6 * GB, 1.0, park_bytes=5 * GB), ResidentModel("B", 2 * GB, 0.0)]
    decision = plan([job("j1", "C", 8 * GB)], resident, 10 * GB, 10.0, 30, host_budget_bytes=8 * GB)
    assert decision.park == ("A",) and decision.evict == ("B",)  # B cannot be parked: dropped
    assert decision.load and not decision.unpark and decision.drop == ()


def test_no_host_budget_drops_as_before():
    resident = [ResidentModel("A", 6 * GB, 1.0, park_bytes=5 * GB)]
    decision = plan([job("j1", "C", 8 * GB)], resident, 10 * GB, 10.0, 30)
    assert decision.evict == ("A",) and decision.park == ()


def test_parked_model_comes_back_without_a_load():
    parked = [ParkedModel("A", 5 * GB, 1.0)]
    decision = plan([job("j1", "A", 6 * GB)], [], 10 * GB, 10.0, 30, parked=parked, host_budget_bytes=8 * GB)
    assert decision.load and decision.unpark and decision.drop == ()


def test_parked_models_are_dropped_least_recently_used_first():
    parked = [ParkedModel("old", 3 * GB, 1.0), ParkedModel("mid", 3 * GB, 2.0)]
    resident = [ResidentModel("A", 6 * GB, 5.0, park_bytes=3 * GB)]
    decision = plan([job("j1", "C", 8 * GB)], resident, 10 * GB, 10.0, 30, parked=parked, host_budget_bytes=6 * GB)
    assert decision.park == ("A",) and decision.drop == ("old",)


def test_ram_an_offloaded_model_holds_drops_parked_ones():
    parked = [ParkedModel("P", 4 * GB, 1.0)]
    queue = [QueuedJob("j1", "Off", "txt2img", 2 * GB, 0.0, host_bytes=5 * GB)]
    decision = plan(queue, [], 10 * GB, 10.0, 30, parked=parked, host_budget_bytes=8 * GB)
    assert decision.load and decision.drop == ("P",)


def _simulate(seed, sizes, parkable, gpu_budget, host_budget, steps=400):
    """Apply plans for a random request trace; check both budgets and the tiers after every step."""
    rng = random.Random(seed)
    resident: dict[str, float] = {}
    parked: dict[str, float] = {}
    loads = unparks = 0
    for step in range(1, steps + 1):
        model = rng.choice(sorted(sizes))
        decision = plan(
            [job(f"j{step}", model, sizes[model], at=step)],
            [ResidentModel(m, sizes[m], t, park_bytes=sizes[m] if parkable[m] else None) for m, t in resident.items()],
            gpu_budget,
            float(step),
            30,
            parked=[ParkedModel(m, sizes[m], t) for m, t in parked.items()],
            host_budget_bytes=host_budget,
        )
        assert decision.run == (f"j{step}",)
        if decision.drop or decision.park:
            # LRU in the host tier (same-size models): whatever is dropped is older than whatever stays.
            kept = [t for m, t in parked.items() if m not in decision.drop] + [resident[m] for m in decision.park]
            dropped = [parked[m] for m in decision.drop] + [resident[m] for m in decision.evict if parkable[m]]
            if len(set(sizes.values())) == 1 and kept and dropped:
                assert max(dropped) < min(kept)
        for m in decision.drop:
            del parked[m]
        for m in decision.evict:
            del resident[m]
        for m in decision.park:
            assert parkable[m]
            parked[m] = resident.pop(m)
        if decision.load:
            assert decision.unpark == (model in parked)
            if decision.unpark:
                unparks += 1
                del parked[model]
            else:
                loads += 1
        else:
            assert model in resident
        resident[model] = float(step)
        assert not set(resident) & set(parked)
        assert sum(sizes[m] for m in resident) <= gpu_budget
        assert sum(sizes[m] for m in parked) <= host_budget
    return loads, unparks


def test_randomised_traces_never_exceed_either_budget():
    rng = random.Random(7)
    for seed in range(30):
        names = [f"m{i}" for i in range(rng.randint(2, 8))]
        sizes = {m: rng.randint(1, 6) * GB for m in names}
        parkable = {m: rng.random() < 0.7 for m in names}
        loads, unparks = _simulate(seed, sizes, parkable, 8 * GB, rng.randint(0, 12) * GB)
        assert loads + unparks <= 400


def test_randomised_equal_sizes_park_lru_and_reuse_ram():
    sizes = {f"m{i}": 2 * GB for i in range(6)}
    with_ram = _simulate(3, sizes, dict.fromkeys(sizes, True), 4 * GB, 6 * GB)
    without = _simulate(3, sizes, dict.fromkeys(sizes, True), 4 * GB, 0)
    assert without[1] == 0 and with_ram[1] > 0
    assert with_ram[0] < without[0]  # swaps from RAM replace loads from disk
    assert sum(with_ram) == without[0]  # the device swaps as often; only where from differs


# ---------------------------------------------------------------- weights + the job's working memory
def working_job(job_id, model, weights, working, at=0.0):
    return QueuedJob(job_id, model, "txt2img", weights + working, at, working_bytes=working)


def test_a_resident_models_job_runs_when_its_working_memory_fits_beside_the_weights():
    resident = [ResidentModel("A", 6 * GB, 0.0), ResidentModel("B", 2 * GB, 1.0)]
    decision = plan([working_job("j1", "B", 2 * GB, 2 * GB)], resident, 10 * GB, 5.0, 30)
    assert decision.run == ("j1",) and not decision.load and decision.evict == ()


def test_a_large_job_of_a_resident_model_makes_idle_models_leave_first():
    """Weights alone would say B can run: 6 + 2 GB of 10. Its 2048² job needs 5 GB more: A leaves (parked)."""
    resident = [ResidentModel("A", 6 * GB, 0.0, park_bytes=6 * GB), ResidentModel("B", 2 * GB, 1.0)]
    decision = plan([working_job("j1", "B", 2 * GB, 5 * GB)], resident, 10 * GB, 5.0, 30, host_budget_bytes=8 * GB)
    assert decision.run == ("j1",) and not decision.load and not decision.unpark
    assert decision.park == ("A",) and decision.evict == ()
    dropped = plan([working_job("j1", "B", 2 * GB, 5 * GB)], resident, 10 * GB, 5.0, 30)
    assert dropped.evict == ("A",) and dropped.park == ()


def test_a_large_job_waits_while_the_model_it_needs_evicted_is_in_use():
    resident = [ResidentModel("A", 6 * GB, 0.0, leases=1), ResidentModel("B", 2 * GB, 1.0)]
    decision = plan([working_job("j1", "B", 2 * GB, 5 * GB)], resident, 10 * GB, 5.0, 30)
    assert decision.run == () and decision.evict == ()


def test_a_model_alone_on_the_device_runs_its_job():
    decision = plan([working_job("j1", "B", 2 * GB, 7 * GB)], [ResidentModel("B", 4 * GB, 1.0)], 10 * GB, 5.0, 30)
    assert decision.run == ("j1",)


def test_randomised_jobs_never_exceed_weights_plus_their_working_memory():
    rng = random.Random(11)
    for seed in range(30):
        weights = {m: rng.randint(1, 6) * GB for m in "ABCDEF"}
        budget = 10 * GB
        resident: dict[str, float] = {}
        for step in range(1, 200):
            model = rng.choice(sorted(weights))
            working = rng.randint(0, budget - weights[model])
            decision = plan(
                [working_job(f"j{step}", model, weights[model], working, at=step)],
                [ResidentModel(m, weights[m], t) for m, t in resident.items()],
                budget, float(step), 30,
            )
            assert decision.run == (f"j{step}",), (seed, step)
            for m in decision.evict:
                del resident[m]
            assert decision.load == (model not in resident)
            resident[model] = float(step)
            assert sum(weights[m] for m in resident) + working <= budget


def _fair_order_by_full_sort(queue, served):
    """The fair order as first written (every job ranked, then one sort): the oracle for the lazy one."""
    seen, ranked = {}, []
    for job in sorted(queue, key=lambda j: j.enqueued_at):
        rank = seen.get(job.account, 0)
        seen[job.account] = rank + 1
        ranked.append((rank, served.get(job.account, float("-inf")), job.enqueued_at, job))
    return [item[-1] for item in sorted(ranked, key=lambda item: item[:3])]


def test_the_fair_order_read_turn_by_turn_is_the_full_sort_to_the_tie():
    import random

    from engine.scheduler import fair_order

    rng = random.Random(11)
    for _ in range(300):
        accounts = [f"acct{i}" for i in range(rng.randint(1, 5))]
        queue = [
            QueuedJob(job_id=f"j{i}", model="m", task="t", need_bytes=1, account=rng.choice(accounts),
                      enqueued_at=float(rng.randint(0, 8)))  # many equal ages: the ties matter
            for i in range(rng.randint(0, 40))
        ]
        if rng.random() < 0.5:
            queue.sort(key=lambda job: job.enqueued_at)
        served = {a: float(rng.choice([1, 2, 2, 5])) for a in accounts if rng.random() < 0.7}
        assert [j.job_id for j in fair_order(queue, served)] == [j.job_id for j in _fair_order_by_full_sort(queue, served)]
