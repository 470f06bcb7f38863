#!/usr/bin/env python
"""Embedding throughput: drylocal over HTTP against sentence-transformers called directly.

Same model (the embedded all-MiniLM-L6-v2 unless --model names another installed slug), same texts,
with 1 and 32 concurrent clients. Each drylocal client submits a one-text job and polls it to done,
as the dryAPI clients do; each baseline client calls ``model.encode([text])`` in its own thread, as a
server without a scheduler would. Prints texts/s for both and their ratio.

    .venv/bin/python scripts/bench_embeddings.py --requests 256
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
WORDS = "the quick brown fox jumps over a lazy dog while cats watch from the warm window sill".split()


def texts(count: int) -> list[str]:
    return [" ".join(WORDS[(i + j) % len(WORDS)] for j in range(8 + i % 24)) for i in range(count)]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def run_clients(concurrency: int, items: list[str], call) -> float:
    """Texts per second for ``call(text)`` run by ``concurrency`` client threads."""
    started = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        list(pool.map(call, items))
    return len(items) / (time.perf_counter() - started)


def baseline(model_path: Path, items: list[str], concurrency: int) -> float:
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(model_path), device="cpu")
    model.encode(items[:8])  # warm-up
    return run_clients(concurrency, items, lambda text: model.encode([text], show_progress_bar=False))


class DryLocal:
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
        deadline = time.time() + 60
        while time.time() < deadline:
            try:
                httpx.get(f"http://127.0.0.1:{self.port}/health", timeout=1)
                return
            except httpx.HTTPError:
                time.sleep(0.2)
        raise RuntimeError("drylocal did not start")

    def client(self) -> httpx.Client:
        if not hasattr(self.local, "client"):
            self.local.client = httpx.Client(headers={"Authorization": f"Bearer {self.key}"}, timeout=120)
        return self.local.client

    def embed(self, text: str, model: str) -> list[float]:
        client = self.client()
        request_id = client.post(f"{self.base}/txt2embedding", json={
            "input": text, "model": model, "return_result_in_response": True}).json()["data"]["request_id"]
        delay = 0.01
        while True:
            data = client.get(f"{self.base}/request-status/{request_id}").json()["data"]
            if data["status"] == "done":
                return json.loads(data["result"])["data"][0]["embedding"]
            if data["status"] == "error":
                raise RuntimeError(data)
            time.sleep(delay)
            delay = min(delay * 1.5, 0.1)

    def close(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="MiniLM_L6_v2")
    parser.add_argument("--requests", type=int, default=256)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 32])
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()

    sys.path.insert(0, str(ROOT))
    from model_registry import ModelRegistry, WeightsLocator

    with tempfile.TemporaryDirectory() as home:
        registry = ModelRegistry.from_files(WeightsLocator(Path(home) / "models"))
        model_path = registry.require_runnable(registry.get(args.model))
        items = texts(args.requests)
        server = DryLocal(Path(home))
        try:
            server.embed("warm up", args.model)
            rows = []
            for concurrency in args.concurrency:
                ours = run_clients(concurrency, items, lambda text: server.embed(text, args.model))
                theirs = baseline(model_path, items, concurrency)
                rows.append({"concurrency": concurrency, "drylocal_texts_per_s": round(ours, 1),
                             "sentence_transformers_texts_per_s": round(theirs, 1), "ratio": round(ours / theirs, 2)})
        finally:
            server.close()

    print(f"model {args.model}, {args.requests} one-text requests, CPU threads: {os.cpu_count()}")
    print(f"{'clients':>8} {'drylocal/s':>11} {'s-t direct/s':>13} {'ratio':>6}")
    for row in rows:
        print(f"{row['concurrency']:>8} {row['drylocal_texts_per_s']:>11} "
              f"{row['sentence_transformers_texts_per_s']:>13} {row['ratio']:>6}")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
