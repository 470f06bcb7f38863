#!/usr/bin/env python
"""Cluster mode on one machine: jobs/s with one and with two simulated Ray devices on a mixed trace, and how long
a job took to come back after its node was killed.

Two Ray nodes on this machine (Ray's own test cluster, loopback only, token auth on, health checks tuned as in
tests/test_cluster.py), each lending one simulated device (a CPU budget that holds one model, as
scripts/bench_devices.py does). One device: only the head's actor is used, so every change of model is a swap;
two: the models stay resident side by side. What is measured is dispatch over Ray and the swaps saved, not a
second GPU's compute (both nodes share this machine's cores). Every device is warmed first with one job per model:
a fresh actor's first load also imports torch and sentence-transformers in its process (seconds), a one-off per
actor printed apart, which a window of 40 short jobs must not count as throughput. Then a long job is sent to the
second node, the node is killed mid-job, and the time until the job is done again elsewhere is printed.

Rounds alternate one and two devices on the same cluster (fresh actors, server and data folder each time); the
medians are printed, the node kill comes once, after the last round.

    .venv/bin/python scripts/bench_cluster.py [--jobs 40] [--clients 4] [--seed 0] [--rounds 3]
"""

from __future__ import annotations

import argparse
import logging
import os
import random
import statistics
import sys
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from scripts.bench_devices import BUDGET, MODELS, _config  # noqa: E402

HEALTH_CHECKS = {"health_check_period_ms": 500, "health_check_timeout_ms": 500, "health_check_failure_threshold": 3}


def start_cluster(folder: Path):
    token = folder / "auth_token"
    token.write_text(uuid.uuid4().hex)
    os.environ.update({"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "RAY_TMPDIR": str(folder), "RAY_AUTH_MODE": "token",
                       "RAY_AUTH_TOKEN_PATH": str(token)})
    from ray.cluster_utils import Cluster

    cluster = Cluster(initialize_head=True, head_node_args={
        "node_ip_address": "127.0.0.1", "num_cpus": 1, "resources": {"drylocal_device": 1}, "include_dashboard": False,
        "_system_config": HEALTH_CHECKS})
    node = cluster.add_node(node_ip_address="127.0.0.1", num_cpus=1, resources={"drylocal_device": 1})
    cluster.connect(namespace="drylocal-bench")
    return cluster, node


def run(
    devices: int, trace: list[str], clients: int, folder: Path, cluster, node, tag: str, recover: bool
) -> tuple[float, int, float, float | None]:
    """(jobs/s, model loads, the slowest warm-up load (a fresh actor's imports), seconds to recover a job after a
    node kill: with ``recover`` only, on two devices)."""
    from engine.cluster.pool import ClusterPool
    from engine.devices import DeviceBudget
    from engine.settings import Settings
    from server.harness import ServerThread

    home = folder / f"home-{tag}"
    _config(home)
    settings = Settings.load(home=home, isolate_executor=False)
    pool = ClusterPool(actor_settings=settings, budget=DeviceBudget("cpu", BUDGET, BUDGET), interval=1.0, grace=3.0,
                       namespace=f"bench-{tag}")
    with ServerThread(settings, workers=pool.workers_for) as server:
        engine = server.engine
        if devices == 1:  # the second node's device out of the dispatcher's choices
            engine.workers[:] = [w for w in engine.workers if w.state.node_id != node.node_id]
        client = server.client()
        with ThreadPoolExecutor(len(MODELS)) as warming:  # together, so each model can land on its own device
            list(warming.map(lambda m: client.run("txt2embedding", poll=0.01, json={"input": "warm up", "model": m}), MODELS))
        _settle(engine)
        cold_start = max(s for w in engine.workers for s in w.load_seconds.values())
        started = time.perf_counter()
        with ThreadPoolExecutor(clients) as pool_threads:
            list(pool_threads.map(lambda m: client.run("txt2embedding", poll=0.01, json={"input": "a cat", "model": m}), trace))
        rate = len(trace) / (time.perf_counter() - started)
        _settle(engine)
        loads = sum(w.loads for w in engine.workers)
        recovery = _recovery(server, client, cluster, node, pool) if recover and devices == 2 else None
        return rate, loads, cold_start, recovery


def _settle(engine) -> None:
    """Wait for every device's state after its last job: a client sees its job done before that state comes."""
    deadline = time.monotonic() + 30
    while not all(w.reported for w in engine.workers):
        assert time.monotonic() < deadline, "a device did not report after its last job"
        time.sleep(0.01)


def _recovery(server, client, cluster, node, pool) -> float:
    engine = server.engine
    texts = [f"a cat sat on mat number {i}" for i in range(1500)]
    # One per model: each goes to the device that holds its model, so one runs on the node about to be killed.
    ids = [client.submit("txt2embedding", json={"input": texts, "model": model}) for model in MODELS]
    doomed_actor = f"drylocal-device-{node.node_id[:12]}-0"
    deadline = time.monotonic() + 120
    while True:
        doomed = next((i for i in ids if pool.placements.actor_of(i) == doomed_actor
                       and engine.jobs.get(i).status == "in_progress"), None)
        if doomed:
            break
        assert time.monotonic() < deadline, "no long job ran on the second node"
        time.sleep(0.02)
    killed = time.perf_counter()
    cluster.remove_node(node, allow_graceful=False)
    while not engine.jobs.get(doomed).finished:
        assert time.monotonic() < deadline + 120, "the job of the killed node did not end"
        time.sleep(0.05)
    job = engine.jobs.get(doomed)
    assert job.status == "done" and job.attempts == 2, (job.status, job.attempts)
    return time.perf_counter() - killed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=40)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    logging.getLogger("httpx").setLevel(logging.WARNING)
    rng = random.Random(args.seed)
    trace = [rng.choice(MODELS) for _ in range(args.jobs)]
    results: dict[int, list[tuple[float, int, float, float | None]]] = {1: [], 2: []}
    with tempfile.TemporaryDirectory(prefix="drybench") as folder:
        cluster, node = start_cluster(Path(folder))
        try:
            for round_no in range(args.rounds):
                for devices in (1, 2):
                    last = round_no == args.rounds - 1
                    result = run(devices, trace, args.clients, Path(folder), cluster, node, f"{round_no}-{devices}", last)
                    results[devices].append(result)
                    print(f"round {round_no + 1}, {devices} device(s): {result[0]:.1f} jobs/s, {result[1]} loads", flush=True)
        finally:
            import ray

            ray.shutdown()
            cluster.shutdown()
    print(f"{args.jobs} jobs over {len(MODELS)} models, {args.clients} clients, each simulated Ray device holds one model;"
          f" medians of {args.rounds} rounds")
    print(f"{'devices':>8} {'jobs/s':>8} {'loads':>6} {'warm-up load s':>15}")
    medians = {}
    for devices, rows in results.items():
        medians[devices] = [statistics.median(row[i] for row in rows) for i in range(3)]
        rate, loads, cold_start = medians[devices]
        print(f"{devices:>8} {rate:>8.1f} {loads:>6.0f} {cold_start:>15.1f}")
    one, two = medians[1], medians[2]
    print(f"two devices against one: {two[0] / one[0]:.2f}x the jobs/s, {two[1]:.0f} loads instead of {one[1]:.0f}")
    print(f"a job whose node was killed mid-run was done again {results[2][-1][3]:.1f} s after the kill (2 attempts)")


if __name__ == "__main__":
    main()
