"""A real ``drylocal serve`` process on a free port, for the benchmarks: start, key, submit, wait."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx

__all__ = ("DryLocal", "ROOT")

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class DryLocal:
    """One server on a data folder of its own. ``client()`` is per thread, so client threads share nothing."""

    def __init__(self, home: Path) -> None:
        self.port = free_port()
        self.env = {**os.environ, "DRYLOCAL_HOME": str(home), "HF_HUB_OFFLINE": "1"}
        cli = [sys.executable, "-m", "server.cli"]
        self.key = subprocess.run([*cli, "keys", "create", "bench"], env=self.env, cwd=ROOT, capture_output=True,
                                  text=True, check=True).stdout.strip()
        self.proc = subprocess.Popen([*cli, "serve", "--port", str(self.port), "--log-level", "warning"],
                                     env=self.env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.base = f"http://127.0.0.1:{self.port}/api/v1/client"
        self.local = threading.local()
        deadline = time.time() + 120
        while time.time() < deadline:
            try:
                httpx.get(f"http://127.0.0.1:{self.port}/health", timeout=1)
                return
            except httpx.HTTPError:
                time.sleep(0.2)
        self.close()
        raise RuntimeError("drylocal did not start")

    def client(self) -> httpx.Client:
        if not hasattr(self.local, "client"):
            self.local.client = httpx.Client(headers={"Authorization": f"Bearer {self.key}"}, timeout=600)
        return self.local.client

    def run(self, route: str, poll: float = 0.1, **request: Any) -> dict[str, Any]:
        """Submit a job and poll it to its end, as a dryAPI client does; the final status data."""
        client = self.client()
        request_id = client.post(f"{self.base}/{route}", **request).json()["data"]["request_id"]
        delay = min(poll, 0.01)
        while (data := client.get(f"{self.base}/request-status/{request_id}").json()["data"])["status"] not in ("done", "error"):
            time.sleep(delay)
            delay = min(delay * 1.5, poll)
        if data["status"] == "error":
            raise RuntimeError(data)
        return data

    def model(self, slug: str) -> dict[str, Any]:
        models = self.client().get(f"{self.base}/models", params={"per_page": 100}).json()["data"]
        return next(m for m in models if m["slug"] == slug)

    def close(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)
