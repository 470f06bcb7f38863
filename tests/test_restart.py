"""Killing the server mid-job loses nothing: a real process, killed with SIGKILL and started again."""

from __future__ import annotations

import contextlib
import sqlite3
import time
from pathlib import Path

import httpx
import pytest

from server.harness import ServerProcess

pytestmark = pytest.mark.slow

# Long enough to be caught mid-run on a 2-core CPU, short enough to finish after each restart.
LONG_INPUT = [f"sentence {i} " + "about cats and dogs and the weather " * 12 for i in range(160)]


class Server(ServerProcess):
    """A supervised ``drylocal serve`` that the tests kill and start again on the same port and data folder."""

    def __init__(self, home: Path) -> None:
        super().__init__(home, account="restart-test")

    def submit(self, text=LONG_INPUT, **extra) -> str:
        return self.client().submit("txt2embedding", json={"input": text, "model": "MiniLM_L6_v2", **extra})

    def status(self, request_id: str) -> dict:
        return self.client().status(request_id)

    def wait_for(self, request_id: str, statuses: tuple[str, ...], timeout: float = 180) -> dict:
        deadline = time.time() + timeout
        while time.time() < deadline:
            data = self.status(request_id)
            if data["status"] in statuses:
                return data
            time.sleep(0.05)
        raise AssertionError(f"{request_id} never reached {statuses}: {data}")

    def job_row(self, request_id: str) -> sqlite3.Row:
        """The job as the database holds it (what a restart reads), with what the API does not show."""
        with contextlib.closing(sqlite3.connect(self.home / "drylocal.db")) as db:
            db.row_factory = sqlite3.Row
            return db.execute("SELECT status, attempts, progress, result_file FROM jobs WHERE id = ?", (request_id,)).fetchone()

    def wait_running(self, request_id: str, timeout: float = 180) -> dict:
        """Until the job has reported progress: mid-run. Read from the database, not request-status: that call
        holds a running job's answer until it ends (up to status_hold_seconds), which could pass the moment."""
        deadline = time.time() + timeout
        while time.time() < deadline:
            row = dict(self.job_row(request_id) or {"status": "pending", "progress": 0})
            if row["status"] in ("processing", "in_progress") and row["progress"] > 0:
                return row
            assert row["status"] in ("pending", "processing", "in_progress"), row
            time.sleep(0.02)
        raise AssertionError(f"{request_id} never ran: {row}")


@pytest.fixture
def server(tmp_path):
    server = Server(tmp_path / "home")
    yield server
    if server.proc and server.proc.poll() is None:
        server.kill()


def test_job_interrupted_by_a_crash_is_requeued_and_finishes(server):
    server.start()
    request_id = server.submit()
    server.wait_running(request_id)
    server.kill()
    # The kill landed mid-run: the job was on its first attempt, past its first batch, with no result.
    killed = server.job_row(request_id)
    assert killed["status"] in ("processing", "in_progress") and killed["attempts"] == 1, dict(killed)
    assert killed["progress"] > 0 and killed["result_file"] is None
    server.start()
    done = server.wait_for(request_id, ("done", "error"))
    assert done["status"] == "done" and done["result_url"]
    assert server.job_row(request_id)["attempts"] == 2  # re-queued once, run again from the start


def test_job_interrupted_twice_fails_with_worker_timeout(server):
    server.start()
    request_id = server.submit()
    for _ in range(2):
        server.wait_running(request_id)
        server.kill()
        server.start()
    failed = server.wait_for(request_id, ("done", "error"))
    assert failed["status"] == "error" and failed["error_code"] == "WORKER_TIMEOUT"


def test_pending_jobs_survive_a_restart(server):
    server.start()
    first = server.submit()
    second = server.submit()
    server.wait_running(first)
    server.kill()
    server.start()
    assert server.wait_for(second, ("done", "error"))["status"] == "done"


def test_a_kill_during_the_result_write_leaves_no_half_file_and_the_job_finishes(server):
    server.start(runner="tests.fault_server", DRYLOCAL_FAULT="slow-result-write")
    request_id = server.submit("a short text")
    deadline = time.time() + 120
    while not (server.home / "stalled").exists():
        assert time.time() < deadline, "the result write never started"
        time.sleep(0.05)
    assert list((server.home / "results").glob("*/*.part"))
    server.kill()
    server.start()
    done = server.wait_for(request_id, ("done", "error"))
    assert done["status"] == "done"
    assert httpx.get(done["result_url"]).json()  # the whole result, readable
    assert not list((server.home / "results").glob("*/*.part"))


def test_a_kill_between_webhook_attempts_loses_no_delivery(server):
    from tests.test_webhooks import Receiver

    receiver = Receiver(fail=2)
    try:
        server.env["DRYLOCAL_WEBHOOK_RETRY_DELAYS"] = "[0, 1.5, 1.5, 1.5, 1.5, 1.5, 1.5, 1.5, 1.5, 1.5]"
        server.start()
        request_id = server.submit("a short text", webhook_url=receiver.url)
        deadline = time.time() + 60
        while len(receiver.requests) < 1:
            assert time.time() < deadline, "no first attempt"
            time.sleep(0.02)
        server.kill()  # between the failed attempt and its retry
        server.start()
        assert server.wait_for(request_id, ("done", "error"))["status"] == "done"
        deadline = time.time() + 60
        while sorted(set(receiver.events())) != ["job.completed", "job.processing"] or len(receiver.requests) < 4:
            assert time.time() < deadline, receiver.events()
            time.sleep(0.05)
        server.kill()
        import sqlite3

        with sqlite3.connect(server.home / "drylocal.db") as db:
            rows = db.execute("SELECT delivery_id, state FROM webhook_outbox").fetchall()
        assert {state for _, state in rows} == {"delivered"} and len(rows) == 2
        # Every retry carried its delivery's one id.
        assert {h["X-DryAPI-Delivery-Id"] for h, _ in receiver.requests} == {delivery for delivery, _ in rows}
    finally:
        receiver.close()
