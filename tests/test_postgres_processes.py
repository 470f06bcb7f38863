"""Two ``drylocal serve`` processes on one PostgreSQL, as behind a load balancer: a socket on either sees
every job's events; killing the leader hands its duties to the other and loses no job or webhook."""

from __future__ import annotations

import json
import time
from collections import Counter

import pytest

from server.harness import ApiClient, ServerProcess
from tests.postgres_server import leader_sessions, postgres  # noqa: F401  (postgres: the module's PostgreSQL server)
from tests.pusher_socket import Socket
from tests.test_restart import LONG_INPUT
from tests.test_webhooks import Receiver

pytestmark = pytest.mark.slow
psycopg = pytest.importorskip("psycopg")




def leader_pid(url: str) -> int | None:
    """The process holding the leader lock, as its campaign session names it."""
    sessions = leader_sessions(url)
    return int(sessions[0][1].rsplit("pid=", 1)[1]) if sessions else None


def job_row(url: str, job_id: str) -> dict:
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute("SELECT status, progress, attempts FROM jobs WHERE id = %s", (job_id,)).fetchone()
    return {"status": row[0], "progress": row[1], "attempts": row[2]}


def wait_until(condition, timeout: float, what: str) -> None:
    deadline = time.time() + timeout
    while not condition():
        assert time.time() < deadline, what
        time.sleep(0.05)


@pytest.fixture(scope="module")
def url(postgres):  # noqa: F811
    return postgres.database()


@pytest.fixture(scope="module")
def servers(url, tmp_path_factory):
    """Process A (started first, so it leads) and process B, sharing the data folder and the database."""
    home = tmp_path_factory.mktemp("shared-home")
    with pytest.MonkeyPatch.context() as env:
        env.setenv("DRYLOCAL_DATABASE_URL", url)
        first = ServerProcess(home, account="process-a")
        first.start()
        second = ServerProcess(home, account="process-b")
        second.start()
    try:
        yield first, second
    finally:
        second.close()
        first.close()


def test_a_socket_on_b_sees_a_job_run_by_a_and_the_survivor_takes_over_when_the_leader_dies(servers, url):
    a, b = servers
    assert leader_pid(url) == a.serving_pid  # the first process leads
    with psycopg.connect(url, autocommit=True) as conn:
        client_id = conn.execute("SELECT client_id FROM accounts WHERE name = 'process-a'").fetchone()[0]
    on_b = ApiClient(b.url, a.key)  # one account's key works on every process: they share the store
    receiver = Receiver()
    socket = Socket(b, a.key, client_id)
    try:
        # A job submitted to A, run by A (the leader): B's socket sees its every step.
        first = a.client().submit("txt2embedding", json={"input": "a short text", "model": "MiniLM_L6_v2",
                                                         "webhook_url": receiver.url})
        wait_until(lambda: "done" in socket.statuses(first), 60, f"B's socket never saw {first} end: {socket.updates}")
        assert socket.statuses(first)[0] == "processing"
        wait_until(lambda: Counter(receiver.events())["job.completed"] == 1, 30, "no webhook for the first job")

        # Jobs submitted to B (a follower) are run by A; A dies while running one of them.
        jobs = [
            on_b.submit("txt2embedding", json={"input": LONG_INPUT, "model": "MiniLM_L6_v2",
                                                     "webhook_url": receiver.url})
            for _ in range(3)
        ]
        wait_until(lambda: job_row(url, jobs[0])["progress"] > 0, 120, "A never ran B's job")
        a.kill()
        killed = time.monotonic()
        wait_until(lambda: leader_pid(url) == b.serving_pid, 15, "B never took over")
        takeover = time.monotonic() - killed
        print(f"\ntakeover after killing the leader: {takeover:.2f} s")
        assert takeover < 5

        # B recovered what A left: every job ends done, the interrupted one on its second attempt.
        for request_id in jobs:
            assert on_b.wait(request_id)["status"] == "done"
        assert job_row(url, jobs[0])["attempts"] == 2
        wait_until(lambda: all("done" in socket.statuses(r) for r in jobs), 30, "B's socket missed an ending")

        # Exactly one job.completed webhook per job, each under its one delivery id.
        everyone = [first, *jobs]
        wait_until(lambda: Counter(receiver.events())["job.completed"] >= len(everyone), 60, receiver.events())
        time.sleep(1.0)  # time for a duplicate to show
        completed = [json.loads(body) for _, body in receiver.requests if json.loads(body)["event"] == "job.completed"]
        assert sorted(c["data"]["job_request_id"] for c in completed) == sorted(everyone)
        assert len({c["delivery_id"] for c in completed}) == len(everyone)
        with psycopg.connect(url, autocommit=True) as conn:
            states = conn.execute("SELECT state, COUNT(*) FROM webhook_outbox GROUP BY state").fetchall()
        assert dict(states).keys() == {"delivered"}
    finally:
        socket.close()
        receiver.close()
        on_b.close()
