"""Killing the server mid-job loses nothing: a real process, killed with SIGKILL and started again."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

pytestmark = pytest.mark.slow

# Long enough to be caught mid-run on a 2-core CPU, short enough to finish after each restart.
LONG_INPUT = [f"sentence {i} " + "about cats and dogs and the weather " * 12 for i in range(160)]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Server:
    def __init__(self, home: Path) -> None:
        self.home = home
        self.port = free_port()
        self.env = {**os.environ, "DRYLOCAL_HOME": str(home), "HF_HUB_OFFLINE": "1"}
        self.proc: subprocess.Popen | None = None
        self.key = self.cli("keys", "create", "restart-test").strip()

    def cli(self, *args: str) -> str:
        return subprocess.run(
            [sys.executable, "-m", "server.cli", *args], env=self.env, capture_output=True, text=True, check=True
        ).stdout

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "server.cli", "serve", "--port", str(self.port), "--log-level", "warning"],
            env=self.env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.time() + 60
        while time.time() < deadline:
            try:
                if httpx.get(f"{self.url}/health", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                time.sleep(0.2)
        raise AssertionError("server did not start")

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def submit(self) -> str:
        response = httpx.post(
            f"{self.url}/api/v1/client/txt2embedding",
            json={"input": LONG_INPUT, "model": "MiniLM_L6_v2"},
            headers={"Authorization": f"Bearer {self.key}"},
        )
        return response.json()["data"]["request_id"]

    def status(self, request_id: str) -> dict:
        response = httpx.get(
            f"{self.url}/api/v1/client/request-status/{request_id}", headers={"Authorization": f"Bearer {self.key}"}
        )
        return response.json()["data"]

    def wait_for(self, request_id: str, statuses: tuple[str, ...], timeout: float = 180) -> dict:
        deadline = time.time() + timeout
        while time.time() < deadline:
            data = self.status(request_id)
            if data["status"] in statuses:
                return data
            time.sleep(0.05)
        raise AssertionError(f"{request_id} never reached {statuses}: {data}")


@pytest.fixture
def server(tmp_path):
    server = Server(tmp_path / "home")
    yield server
    if server.proc and server.proc.poll() is None:
        server.kill()


def test_job_interrupted_by_a_crash_is_requeued_and_finishes(server):
    server.start()
    request_id = server.submit()
    server.wait_for(request_id, ("in_progress",))
    server.kill()
    server.start()
    done = server.wait_for(request_id, ("done", "error"))
    assert done["status"] == "done" and done["result_url"]


def test_job_interrupted_twice_fails_with_worker_timeout(server):
    server.start()
    request_id = server.submit()
    for _ in range(2):
        server.wait_for(request_id, ("in_progress",))
        server.kill()
        server.start()
    failed = server.wait_for(request_id, ("done", "error"))
    assert failed["status"] == "error" and failed["error_code"] == "WORKER_TIMEOUT"


def test_pending_jobs_survive_a_restart(server):
    server.start()
    first = server.submit()
    second = server.submit()
    server.wait_for(first, ("in_progress",))
    server.kill()
    server.start()
    assert server.wait_for(second, ("done", "error"))["status"] == "done"
