"""drylocal on a free 127.0.0.1 port with a key of its own, and a small client of its API.

Two ways to run it: ``ServerThread`` serves an app on a thread of this process (tests reach its engine;
``drylocal bench`` measures the process it runs in) and ``ServerProcess`` runs ``drylocal serve`` as
users do (the benchmark scripts, the crash tests). Both hand out ``ApiClient``s: the key's header,
submit and poll to the end, model lookup; what any dryAPI client does.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from functools import cached_property
from pathlib import Path
from typing import Any, Iterator

import httpx

__all__ = ("API", "FINISHED", "ApiClient", "ServerProcess", "ServerThread", "free_port", "pauses")

API = "/api/v1/client"
FINISHED = ("done", "error")
"""The statuses a job ends in."""
ROOT = Path(__file__).resolve().parent.parent
"""The source checkout: ``python -m`` finds ``server.cli`` (and the tests' fault server) from here."""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def pauses(most: float = 0.1, first: float = 0.01) -> Iterator[float]:
    """Waits between status polls: quick for a short job, backing off to ``most`` for a long one."""
    pause = min(first, most)
    while True:
        yield pause
        pause = min(pause * 1.5, most)


class ApiClient:
    """One key's client of the dryAPI routes; ``http`` (an httpx.Client on the server's root, the key in
    its headers) reaches everything else: result URLs, ``/metrics``, ``/health``."""

    def __init__(self, url: str, key: str, timeout: float = 600.0) -> None:
        self.url = url.rstrip("/")
        self.headers = {"Authorization": f"Bearer {key}"}
        self.timeout = timeout
        self.http = httpx.Client(base_url=self.url, headers=self.headers, timeout=timeout)

    def submit(self, route: str, **request: Any) -> str:
        """POST a job (``json=`` or ``files=``/``data=`` as httpx takes them); its request id."""
        response = self.http.post(f"{API}/{route}", **request)
        response.raise_for_status()
        return response.json()["data"]["request_id"]

    def status(self, request_id: str) -> dict[str, Any]:
        return self.http.get(f"{API}/request-status/{request_id}").json()["data"]

    def wait(self, request_id: str, poll: float = 0.1) -> dict[str, Any]:
        """Poll until the job is done or failed, at most ``poll`` seconds apart; the last status data."""
        for pause in pauses(poll):
            if (data := self.status(request_id))["status"] in FINISHED:
                return data
            time.sleep(pause)
        raise AssertionError("unreachable")

    def run(self, route: str, poll: float = 0.1, **request: Any) -> dict[str, Any]:
        """Submit a job and wait for its end; a failed job raises, with its status data."""
        data = self.wait(self.submit(route, **request), poll)
        if data["status"] != "done":
            raise RuntimeError(f"{route} failed: {data}")
        return data

    def model(self, slug: str) -> dict[str, Any]:
        """The model's entry in ``GET /models``: load time and memory as the server last measured them."""
        models = self.http.get(f"{API}/models", params={"per_page": 100}).json()["data"]
        return next(m for m in models if m["slug"] == slug)

    def asynchronous(self, **options: Any) -> httpx.AsyncClient:
        """An httpx.AsyncClient with this client's server, key and timeout, for many jobs at once."""
        return httpx.AsyncClient(base_url=self.url, headers=self.headers, **{"timeout": self.timeout, **options})

    def close(self) -> None:
        self.http.close()


class _Served:
    """What both ways of serving share: the address, the key and per-thread clients."""

    port: int
    key: str

    def __init__(self) -> None:
        self.port = free_port()
        self._local = threading.local()
        self._clients: list[ApiClient] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def client(self) -> ApiClient:
        """This thread's client with the server's own key: client threads share no connection pool."""
        if (client := getattr(self._local, "client", None)) is None:
            client = self._local.client = ApiClient(self.url, self.key)
            self._clients.append(client)
        return client

    def start(self) -> _Served:
        raise NotImplementedError

    def close(self) -> None:
        self._drop_clients()

    def _drop_clients(self) -> None:
        for client in self._clients:
            client.close()
        self._local, self._clients = threading.local(), []

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class ServerThread(_Served):
    """drylocal served by uvicorn on a thread of this process, for callers that want its engine and app.

    ``keep_alive_seconds`` reaches uvicorn's ``timeout_keep_alive``; ``provision`` first converts the
    weights that ship in packages, as ``drylocal serve`` does. The own key is made on first use, on an
    account named ``account`` (found again on a lasting data folder), and revoked at the end.
    """

    def __init__(self, settings: Any, *, account: str = "drylocal-harness", keep_alive_seconds: int | None = None,
                 provision: bool = False, **engine_options: Any) -> None:
        import uvicorn

        from server.app import create_app
        from server.http_protocol import http_protocol

        super().__init__()
        self.settings = settings.model_copy(update={"port": self.port})
        self.account = account
        if provision:
            from model_registry.embedded import provision_embedded

            self.settings.ensure_dirs()
            provision_embedded(self.settings.models_dir, skip=self.settings.embedded_skip)
        self.app = create_app(self.settings, **engine_options)
        keep_alive = {} if keep_alive_seconds is None else {"timeout_keep_alive": keep_alive_seconds}
        config = uvicorn.Config(self.app, host="127.0.0.1", port=self.port, log_level="warning",
                                http=http_protocol(self.settings), **keep_alive)
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, daemon=True)

    @property
    def engine(self):
        return self.app.state.engine

    def new_key(self, name: str, tier: str = "unlimited", balance: float = 0.0) -> tuple[str, Any]:
        """A key on a new account of its own; the key and the account."""
        account = self.engine.accounts.create_account(name, tier=tier, balance=balance)
        return self.engine.accounts.create_key(account, name), account

    @cached_property
    def key(self) -> str:
        accounts = self.engine.accounts
        account = accounts.find_account(self.account) or accounts.create_account(self.account, tier="unlimited")
        return accounts.create_key(account, self.account)

    def start(self, timeout: float = 120.0) -> ServerThread:
        self._thread.start()
        deadline = time.time() + timeout
        while not self._server.started and self._thread.is_alive() and time.time() < deadline:
            time.sleep(0.05)
        if not self._server.started:
            raise RuntimeError("drylocal did not start serving")
        return self

    def close(self) -> None:
        super().close()
        if "key" in self.__dict__:
            self.engine.accounts.revoke_key(self.account)
        self._server.should_exit = True
        self._thread.join(30)


class ServerProcess(_Served):
    """``drylocal serve`` in a process of its own on the data folder ``home``, as users run it (supervised).

    ``start`` may be called again after ``kill``, on the same port; ``runner`` is the module run with
    ``python -m`` (the crash tests' ``tests.fault_server`` injects faults into the same command).
    """

    def __init__(self, home: Path, *, account: str = "drylocal-harness", root: Path = ROOT) -> None:
        """``root``: the checkout whose code serves (a benchmark's baseline runs another one)."""
        super().__init__()
        self.home = home
        self.root = root
        self.env = {**os.environ, "DRYLOCAL_HOME": str(home), "HF_HUB_OFFLINE": "1"}
        self.proc: subprocess.Popen | None = None
        self.key = self.cli("keys", "create", account).strip()

    def cli(self, *args: str) -> str:
        """A ``drylocal`` command on this data folder; what it printed."""
        return subprocess.run([sys.executable, "-m", "server.cli", *args], env=self.env, cwd=self.root,
                              capture_output=True, text=True, check=True).stdout

    def start(self, runner: str = "server.cli", timeout: float = 120.0, **env: str) -> ServerProcess:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", runner, "serve", "--port", str(self.port), "--log-level", "warning"],
            env={**self.env, **env}, cwd=self.root, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        deadline = time.time() + timeout
        while time.time() < deadline and self.proc.poll() is None:
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{self.url}/health", timeout=1).status_code == 200:
                    return self
            time.sleep(0.2)
        self.close()
        raise RuntimeError(f"drylocal did not start serving on port {self.port}")

    @property
    def serving_pid(self) -> int:
        """The process that serves: the supervisor's child (Linux), else the one started."""
        assert self.proc is not None
        with contextlib.suppress(OSError, ValueError):
            children = Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children").read_text().split()
            return int(children[0]) if children else self.proc.pid
        return self.proc.pid

    def kill(self) -> None:
        """SIGKILL, as a crash or the OOM killer would; the supervisor takes its child with it."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)
        self._drop_clients()  # their pooled connections died with the server

    def close(self) -> None:
        super().close()
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.kill()
