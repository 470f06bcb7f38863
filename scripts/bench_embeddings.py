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
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from server.harness import ServerProcess  # noqa: E402

WORDS = "the quick brown fox jumps over a lazy dog while cats watch from the warm window sill".split()


def texts(count: int) -> list[str]:
    return [" ".join(WORDS[(i + j) % len(WORDS)] for j in range(8 + i % 24)) for i in range(count)]


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


def embed(server: ServerProcess, text: str, model: str) -> list[float]:
    data = server.client().run("txt2embedding", json={"input": text, "model": model, "return_result_in_response": True})
    return json.loads(data["result"])["data"][0]["embedding"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="MiniLM_L6_v2")
    parser.add_argument("--requests", type=int, default=256)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 32])
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()

    from model_registry import ModelRegistry, WeightsLocator

    with tempfile.TemporaryDirectory() as home:
        registry = ModelRegistry.from_files(WeightsLocator(Path(home) / "models"))
        model_path = registry.require_runnable(registry.get(args.model))
        items = texts(args.requests)
        with ServerProcess(Path(home)) as server:
            embed(server, "warm up", args.model)
            rows = []
            for concurrency in args.concurrency:
                ours = run_clients(concurrency, items, lambda text: embed(server, text, args.model))
                theirs = baseline(model_path, items, concurrency)
                rows.append({"concurrency": concurrency, "drylocal_texts_per_s": round(ours, 1),
                             "sentence_transformers_texts_per_s": round(theirs, 1), "ratio": round(ours / theirs, 2)})

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
