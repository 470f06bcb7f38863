#!/usr/bin/env python
"""Image generation end to end: drylocal (submit to done, over HTTP) against the same diffusers
pipeline called directly in one process, same parameters, side by side.

    .venv/bin/python scripts/bench_images.py                      # tiny random FLUX on the CPU
    .venv/bin/python scripts/bench_images.py --family zimage      # tiny random Z-Image

Full size, on a GPU: ``scripts/gpu_check.py --families flux1-schnell`` times FLUX.1-schnell 1024² through the
API against the same pipeline called directly, with random weights made on the GPU (this script serves through
``drylocal serve`` in another process, where the check's random-weights stand-in cannot reach).

Prints the mean seconds per image for both, their ratio, drylocal's cold load time, and the peak
memory of each (GPU: torch's peak allocation; CPU: the process's peak resident set).
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from server.harness import ServerProcess  # noqa: E402

BUILDERS = {
    # family: (module, tiny builder)
    "flux": ("tests.flux_checkpoint", "build_tiny_flux"),
    "flux2-klein": ("tests.image_checkpoints", "build_tiny_flux2_klein"),
    "zimage": ("tests.image_checkpoints", "build_tiny_zimage"),
}


def build_checkpoint(family: str, target: Path) -> Path:
    import importlib

    module_name, tiny = BUILDERS[family]
    return getattr(importlib.import_module(module_name), tiny)(target)


def register(home: Path, slug: str, path: Path, size: int) -> None:
    home.mkdir(parents=True, exist_ok=True)
    (home / "config.toml").write_text(
        f"""
[[models]]
slug = "{slug}"
name = "{slug}"
inference_types = ["txt2img"]
backend = "diffusers"
quantization = "bf16"
vram_bytes = 1_000_000
source = {{ path = "{path}" }}
price = {{ formula = "image_steps", rates = {{ per_step_512 = 0.00034 }} }}
[models.info.limits]
min_width = 16
max_width = {max(size, 2048)}
min_height = 16
max_height = {max(size, 2048)}
resolution_step = 16
[models.info.features]
supports_guidance = false
supports_negative_prompt = false
"""
    )


def peak_rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return 0


def direct_run(path: Path, params: dict, runs: int, device: str) -> dict:
    import torch
    from diffusers import DiffusionPipeline

    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    started = time.perf_counter()
    pipe = DiffusionPipeline.from_pretrained(str(path), dtype=dtype).to(device)
    pipe.set_progress_bar_config(disable=True)
    load = time.perf_counter() - started
    times = []
    for index in range(runs + 1):
        generator = torch.Generator("cpu").manual_seed(params["seed"])
        started = time.perf_counter()
        pipe(prompt=params["prompt"], width=params["width"], height=params["height"],
             num_inference_steps=params["steps"], generator=generator, output_type="pil").images[0].save(
            Path(tempfile.gettempdir()) / "bench_direct.png")
        if index:  # the first call warms up kernels, as drylocal's warm-up job does
            times.append(time.perf_counter() - started)
    peak = torch.cuda.max_memory_allocated() if device == "cuda" else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return {"seconds": statistics.mean(times), "load_seconds": load, "peak_bytes": peak}


def drylocal_run(home: Path, slug: str, params: dict, runs: int) -> dict:
    with ServerProcess(home) as server:
        client = server.client()
        times = []
        for index in range(runs + 1):
            started = time.perf_counter()
            data = client.run("txt2img", poll=0.01, json={**params, "model": slug})
            client.http.get(data["result_url"])
            if index:  # the first job also loads the model
                times.append(time.perf_counter() - started)
        info = client.model(slug)
        return {"seconds": statistics.mean(times), "load_seconds": info["load_seconds"],
                "peak_bytes": info["memory_bytes"] if info.get("memory_bytes") and "cuda" in str(info) else peak_rss_bytes(server.serving_pid)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--family", choices=sorted(BUILDERS), default="flux")
    parser.add_argument("--size", type=int, default=None)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()

    import torch

    device = "cuda" if torch.cuda.is_available() else "cpu"
    size = args.size or 64
    params = {"prompt": "a red cat on a blue sky", "width": size, "height": size, "steps": args.steps, "seed": 42}
    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch)
        path = build_checkpoint(args.family, scratch / "pipeline")
        register(scratch / "home", "BenchModel", path, size)
        ours = drylocal_run(scratch / "home", "BenchModel", params, args.runs)
        theirs = direct_run(path, params, args.runs, device)
    row = {"family": args.family, "device": device, "size": size, "steps": args.steps,
           "drylocal_seconds": round(ours["seconds"], 4), "direct_seconds": round(theirs["seconds"], 4),
           "ratio": round(ours["seconds"] / theirs["seconds"], 3),
           "drylocal_load_seconds": round(ours["load_seconds"] or 0, 3), "direct_load_seconds": round(theirs["load_seconds"], 3),
           "drylocal_peak_bytes": ours["peak_bytes"], "direct_peak_bytes": theirs["peak_bytes"]}
    print(json.dumps(row, indent=2))
    print(f"\n{args.family} tiny {size}x{size}, {args.steps} steps on {device}: "
          f"drylocal {row['drylocal_seconds']} s vs direct {row['direct_seconds']} s per image (ratio {row['ratio']})")
    if args.json:
        args.json.write_text(json.dumps(row, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
