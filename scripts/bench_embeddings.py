#!/usr/bin/env python
"""Embedding throughput: drylocal against Infinity, the same model folder, the same one-text clients.

Each client thread sends one-text requests back to back, with 1 and 32 clients (``--concurrency``):

- ``infinity``: Infinity (infinity-emb 0.0.78, torch engine, its dynamic batching), ``POST /embeddings``,
  run from its own virtual environment on the model's folder. The peer every ratio is taken against.
- ``drylocal /v1/embeddings``: ``drylocal serve`` (as users run it), the OpenAI route, answered at once.
- ``drylocal txt2embedding``: the dryAPI route, polled as the SDK polls: submit, ``request-status`` at once
  (the server holds it until the job ends, up to ``status_hold_seconds``), then after 1, 1.5, 2.25 s...
- ``s-t batched encode``: sentence-transformers' ``encode(all texts, batch_size=32)`` in this process, no
  server and no clients: what the forward passes alone cost, the floor under every server's overhead.

One server is loaded at a time: both are started, and the contenders take turns, one burst of
``--requests`` texts each per concurrency, for ``--rounds`` rounds (the floor runs once a round, between
them). A shared machine's other work comes and goes, so turns close in time are compared: each figure is
the median of its rounds, and each ratio the median of its rounds' ratios to Infinity's turn just before.
The CPU time the idle server took during the other's turns is printed, to show it stayed out of the way.
``--json`` also writes the figures. ``--baseline CHECKOUT`` adds that checkout's ``drylocal serve`` (its own data
folder) as two more contenders, taking its turns beside this one's, so a change is measured against the
code before it in the same run.

Infinity's virtual environment (once; torch 2.13.0 is a CPU build, from local disk on these machines):

    python3 -m venv ../infinity-venv
    ../infinity-venv/bin/pip install "torch==2.13.0" "infinity-emb[server,torch]==0.0.78"

``--infinity`` names that environment (default: ``infinity-venv`` beside this checkout); where it has no
``bin/infinity_emb``, the Infinity column is skipped with a note and the ratios are left out.

    .venv/bin/python scripts/bench_embeddings.py --requests 256
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable, Iterator

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from server.harness import API, FINISHED, ServerProcess, free_port  # noqa: E402

WORDS = "the quick brown fox jumps over a lazy dog while cats watch from the warm window sill".split()
INFINITY = "infinity"
OPENAI = "drylocal /v1/embeddings"
DRYAPI = "drylocal txt2embedding"
FLOOR = "s-t batched encode"
BASELINE = "baseline"
SDK_PAUSES = (1.0, 1.5)
"""The deAPI SDK's ``job.wait()``: the first poll at once, then 1 s, growing by 1.5 each time."""


def texts(count: int) -> list[str]:
    return [" ".join(WORDS[(i + j) % len(WORDS)] for j in range(8 + i % 24)) for i in range(count)]


class Clients:
    """Client threads, each with its own HTTP connection, sending one-text requests back to back."""

    def __init__(self, url: str, headers: dict[str, str] | None = None) -> None:
        self.url, self.headers = url, headers or {}
        self._local = threading.local()
        self._made: list[httpx.Client] = []

    def http(self) -> httpx.Client:
        if (client := getattr(self._local, "client", None)) is None:
            client = self._local.client = httpx.Client(base_url=self.url, headers=self.headers, timeout=600)
            self._made.append(client)
        return client

    def texts_per_second(self, concurrency: int, items: list[str], call: Callable[[httpx.Client, str], None]) -> float:
        warm = items[: max(concurrency * 2, 16)]
        self._map(concurrency, warm, call)
        started = time.perf_counter()
        self._map(concurrency, items, call)
        return len(items) / (time.perf_counter() - started)

    def _map(self, concurrency: int, items: list[str], call) -> None:
        with ThreadPoolExecutor(concurrency) as pool:
            list(pool.map(lambda text: call(self.http(), text), items))
        self._local = threading.local()  # the pool's threads are gone; their clients are closed below
        for client in self._made:
            client.close()
        self._made = []


def openai_style(path: str, model: str) -> Callable[[httpx.Client, str], None]:
    def call(http: httpx.Client, text: str) -> None:
        response = http.post(path, json={"input": text if path.startswith("/v1") else [text], "model": model})
        response.raise_for_status()
        assert len(response.json()["data"][0]["embedding"]) > 0

    return call


def sdk_polled(model: str) -> Callable[[httpx.Client, str], None]:
    """Submit a txt2embedding job and poll its status as the deAPI SDK's ``job.wait()`` does."""

    def call(http: httpx.Client, text: str) -> None:
        response = http.post(f"{API}/txt2embedding", json={"input": text, "model": model, "return_result_in_response": True})
        response.raise_for_status()
        request_id = response.json()["data"]["request_id"]
        for pause in _sdk_pauses():
            time.sleep(pause)
            data = http.get(f"{API}/request-status/{request_id}").json()["data"]
            if data["status"] in FINISHED:
                break
        assert data["status"] == "done", data
        assert json.loads(data["result"])["data"][0]["embedding"]

    return call


def _sdk_pauses() -> Iterator[float]:
    yield 0.0
    pause, growth = SDK_PAUSES
    while True:
        yield pause
        pause *= growth


@contextlib.contextmanager
def infinity(venv: Path, model_path: Path) -> Iterator[tuple[Clients, list[int]]]:
    """Infinity serving the model folder: its clients and its process id."""
    port = free_port()
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "INFINITY_ANONYMOUS_USAGE_STATS": "0", "DO_NOT_TRACK": "1"}
    command = [str(venv / "bin" / "infinity_emb"), "v2", "--model-id", str(model_path), "--served-model-name", "bench",
               "--engine", "torch", "--device", "cpu", "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"]
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    with _serving(process, f"http://127.0.0.1:{port}/health"):
        yield Clients(f"http://127.0.0.1:{port}"), [process.pid]


@contextlib.contextmanager
def drylocal(home: Path, root: Path = ROOT) -> Iterator[tuple[Clients, list[int]]]:
    """``drylocal serve`` of the checkout ``root`` on a data folder of its own: its clients, and its processes
    (the supervisor, the server and its inference process, once a job has started it)."""
    server = ServerProcess(home, root=root).start()
    try:
        yield Clients(server.url, {"Authorization": f"Bearer {server.key}"}), [server.proc.pid]
    finally:
        server.close()


def measure_floor(model_path: Path, items: list[str]) -> float:
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(model_path), device="cpu")
    model.encode(items[:32], batch_size=32, show_progress_bar=False)  # warm-up
    started = time.perf_counter()
    model.encode(items, batch_size=32, show_progress_bar=False)
    return len(items) / (time.perf_counter() - started)


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU time of these processes and their descendants (Linux /proc)."""
    total, seen, todo = 0.0, set(), list(pids)
    while todo:
        pid = todo.pop()
        if pid in seen:
            continue
        seen.add(pid)
        with contextlib.suppress(OSError):
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
            for task in Path(f"/proc/{pid}/task").iterdir():
                todo += [int(child) for child in (task / "children").read_text().split()]
    return total


@contextlib.contextmanager
def _serving(process: subprocess.Popen, health: str, timeout: float = 180.0):
    try:
        deadline = time.time() + timeout
        while time.time() < deadline and process.poll() is None:
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(health, timeout=1).status_code == 200:
                    break
            time.sleep(0.3)
        else:
            raise RuntimeError(f"the server did not answer {health}")
        yield process
    finally:
        process.terminate()
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)


def _turns(contenders, items, concurrencies, rounds, model_path):
    """Each contender's burst in turn, ``rounds`` times: texts/s and ratios to Infinity's turn, per
    concurrency; the floor once a round; the CPU share each server took while the other one was loaded."""
    rates = {name: {c: [] for c in concurrencies} for name in contenders}
    ratios = {name: {c: [] for c in concurrencies} for name in contenders if INFINITY in contenders}
    floors, idle_cpu, idle_wall = [], {}, {}
    for name, (clients, _, call) in contenders.items():  # loads the models and warms every path up
        clients.texts_per_second(max(concurrencies), items[:64], call)
    for _ in range(rounds):
        for concurrency in concurrencies:
            for name, (clients, pids, call) in contenders.items():
                others = {_server(n): c[1] for n, c in contenders.items() if c[1] is not pids}
                before = {server: cpu_seconds(p) for server, p in others.items()}
                started = time.perf_counter()
                rate = clients.texts_per_second(concurrency, items, call)
                wall = time.perf_counter() - started
                for server, p in others.items():
                    idle_cpu[server] = idle_cpu.get(server, 0.0) + cpu_seconds(p) - before[server]
                    idle_wall[server] = idle_wall.get(server, 0.0) + wall
                rates[name][concurrency].append(rate)
                if INFINITY in contenders:
                    ratios[name][concurrency].append(rate / rates[INFINITY][concurrency][-1])
        floors.append(measure_floor(model_path, items))
    idle = {server: idle_cpu[server] / idle_wall[server] for server in idle_cpu}
    return rates, ratios, floors, idle


def _server(contender: str) -> str:
    return "Infinity" if contender == INFINITY else "baseline" if contender.startswith(BASELINE) else "drylocal"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="MiniLM_L6_v2")
    parser.add_argument("--requests", type=int, default=256)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 32])
    parser.add_argument("--infinity", type=Path, default=ROOT.parent / "infinity-venv",
                        help="Infinity's virtual environment (default: infinity-venv beside this checkout)")
    parser.add_argument("--rounds", type=int, default=5, help="turns each contender takes per concurrency")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    parser.add_argument("--baseline", type=Path, help="another checkout whose drylocal takes turns beside this one's")
    args = parser.parse_args()

    from model_registry import ModelRegistry, WeightsLocator

    items = texts(args.requests)
    with tempfile.TemporaryDirectory() as home:
        registry = ModelRegistry.from_files(WeightsLocator(Path(home) / "models"))
        model_path = registry.require_runnable(registry.get(args.model))
        peer = contextlib.nullcontext(None)
        if (args.infinity / "bin" / "infinity_emb").exists():
            peer = infinity(args.infinity, model_path)
        else:
            print(f"note: no Infinity at {args.infinity} (see --help to create it); its column and the ratios are skipped")
        base_home = Path(home) / "baseline"
        base_home.mkdir()
        before = drylocal(base_home, args.baseline.resolve()) if args.baseline else contextlib.nullcontext(None)
        with peer as theirs, drylocal(Path(home)) as ours, before as base:
            contenders = {OPENAI: (*ours, openai_style("/v1/embeddings", args.model)), DRYAPI: (*ours, sdk_polled(args.model))}
            if base is not None:
                contenders = {f"{BASELINE} {OPENAI.split()[-1]}": (*base, openai_style("/v1/embeddings", args.model)),
                              f"{BASELINE} {DRYAPI.split()[-1]}": (*base, sdk_polled(args.model)), **contenders}
            if theirs is not None:
                contenders = {INFINITY: (*theirs, openai_style("/embeddings", "bench")), **contenders}
            rates, ratios, floors, idle = _turns(contenders, items, args.concurrency, args.rounds, model_path)
    rows = {name: {c: statistics.median(r) for c, r in by_clients.items()} for name, by_clients in rates.items()}
    floor = statistics.median(floors)

    print(f"model {args.model}, {args.requests} one-text requests a turn, medians of {args.rounds} rounds, "
          f"{os.cpu_count()} CPU threads")
    print(f"{'path':<26}{'clients':>8}{'texts/s':>9}{'vs Infinity':>13}")
    table = []
    for name, figures in rows.items():
        for concurrency, rate in figures.items():
            ratio = round(statistics.median(ratios[name][concurrency]), 2) if ratios.get(name) else None
            table.append({"path": name, "clients": concurrency, "texts_per_s": round(rate, 1), "vs_infinity": ratio})
            print(f"{name:<26}{concurrency:>8}{rate:>9.1f}{'' if ratio is None else f'{ratio:.2f}x':>13}")
    if args.baseline:
        for ours, theirs in ((OPENAI, f"{BASELINE} {OPENAI.split()[-1]}"), (DRYAPI, f"{BASELINE} {DRYAPI.split()[-1]}")):
            for concurrency in args.concurrency:
                ratio = statistics.median(a / b for a, b in zip(rates[ours][concurrency], rates[theirs][concurrency]))
                print(f"{ours} over the baseline, {concurrency} clients: {ratio:.2f}x")
                table.append({"path": ours, "clients": concurrency, "vs_baseline": round(ratio, 2)})
    print(f"{FLOOR:<26}{'-':>8}{floor:>9.1f}   (batches of 32, no server: the floor under every server's overhead)")
    table.append({"path": FLOOR, "clients": None, "texts_per_s": round(floor, 1), "vs_infinity": None})
    for name, share in idle.items():
        print(f"{name} idle during the other server's turns: {share:.1%} of one core")
    if args.json:
        args.json.write_text(json.dumps(table, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
