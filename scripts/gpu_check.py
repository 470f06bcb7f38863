#!/usr/bin/env python
"""The GPU verification kit: every model family built at full size, run through drylocal, judged in one call.

    python scripts/gpu_check.py                       # the core set at full size on the GPU (<= 8 minutes on an H100)
    python scripts/gpu_check.py --optional            # the optional set (TTS, music, OCR), a second call
    python scripts/gpu_check.py --budget-bytes 24e9   # plan as on a 24 GB card: offloaded placements on a big card
    python scripts/gpu_check.py --families flux1-schnell,bge-m3 --out report.json
    python scripts/gpu_check.py --tiny --all          # the same check, tiny configs on the CPU (CI runs it)
    python scripts/gpu_check.py --list                # the families and their sets
    python scripts/gpu_check.py --prepare-inputs DIR  # speech for Whisper, made where Piper runs (see gpu_kit.sh)

Nothing is downloaded and nothing large is written: each family's folder holds the real layout with full-size
configs (model_registry/configs/) and placeholder weight files; while the family runs, the weights those stand
for are created at random on the GPU as diffusers and transformers read them (scripts/gpu_kit/random_weights.py,
the check's one stand-in). From there drylocal's own loaders (precision, bitsandbytes NF4/INT8, fp8), placement,
worker, pipelines and HTTP API do the rest. Each family runs in a process of its own with its own timeout, so
one failure or out-of-memory cannot hide the others. The report (JSON, ``--out``) and the printed table give per
family PASS/FAIL/SKIP and the figures; the exit status is 1 when any family failed.

A family passes when every job finished, its weights after load are within 15 % of the catalog's figure
(tiny: of what its configs hold at the CPU's precision), its peak stayed within what the worker reserves for
it (weights + declared working memory), the device's free memory came back within 1 GB after drylocal's unload,
and nothing it output held a NaN or an Inf. For FLUX.1-schnell, Whisper large-v3 and BGE-M3 the API's
submit-to-done time is set beside the same loaded model called directly in the same process (goal <= 1.02x,
reported, not judged: timing noise is no failure), with Whisper's real-time factor. On the CPU (``--tiny``) peak
and unload are the process's resident set: reported, not judged.

On a device machine without network, scripts/gpu_kit.sh installs what the image lacks and runs this script
within one command's time (``--deadline``: families left without time fail as not run, and the report is written).

The tiny run forks its family processes from a parent that has already imported torch and the libraries (a
CPU has nothing to fork wrong); the full run forks from a parent that has imported none of them, so each
family's CUDA starts clean, at a few seconds' import each.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from scripts.gpu_kit.families import CORE, FAMILIES, OPTIONAL, Family, family_named  # noqa: E402
from scripts.gpu_kit.report import failed, table  # noqa: E402

TINY_TIMEOUT_SCALE = 1.0

_PRELOAD = (
    "torch", "diffusers", "transformers", "sentence_transformers", "faster_whisper", "soundfile", "httpx", "uvicorn",
    "server.app", "server.harness", "engine.tasks", "model_registry.loaders.diffusers",
    "model_registry.loaders.sentence_transformers", "model_registry.loaders.faster_whisper",
    "tests.flux_checkpoint", "tests.image_checkpoints", "tests.video_checkpoint", "tests.ltx2_checkpoint",
    "tests.whisper_checkpoint", "tests.checkpoints", "scripts.gpu_kit.family_run",
)


@dataclass
class _Child:
    family: Family
    pid: int
    started: float
    timeout: float
    result: Path
    log: Path
    folder: Path


def _environment(tiny: bool, threads: int) -> None:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("DIFFUSERS_VERBOSITY", "error")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    if tiny:
        for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
            os.environ[name] = str(threads)


def _start(family: Family, work: Path, options: dict, timeout: float) -> _Child:
    folder = work / family.name
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    result, log = folder / "result.json", folder / "log.txt"
    plant = (options.get("plants") or {}).get(family.name)
    sys.stdout.flush()  # else the child inherits the parent's unwritten lines and writes them again
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:  # the family's process: its own group, so a timeout takes its children (Piper) with it
        code = 1
        try:
            os.setpgrp()
            out = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            os.dup2(out, 1)
            os.dup2(out, 2)
            from scripts.gpu_kit.family_run import main as run_family

            code = run_family([family.name, json.dumps({**options, "work": str(folder), "plant": plant}), str(result)])
        except BaseException:
            import traceback

            traceback.print_exc()
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)
    return _Child(family, pid, time.monotonic(), timeout, result, log, folder)


def _finished(child: _Child, status: int | None) -> dict:
    """The family's entry: what its process wrote, or why it wrote nothing."""
    if status is None:
        entry = {"status": "fail", "error": f"timed out after {child.timeout:.0f} s (its process was killed)"}
    elif child.result.is_file():
        return {**json.loads(child.result.read_text()), "log": str(child.log)}
    elif os.WIFSIGNALED(status):
        name = signal.Signals(os.WTERMSIG(status)).name
        entry = {"status": "fail", "error": f"its process died of {name} (out of memory?) before reporting"}
    else:
        entry = {"status": "fail", "error": f"its process exited with {os.WEXITSTATUS(status)} before reporting"}
    tail = child.log.read_text(errors="replace")[-3000:] if child.log.is_file() else ""
    return {"family": child.family.name, "slug": child.family.slug, "set": "core" if child.family.core else "optional",
            "jobs": [], "log": str(child.log), "log_tail": tail, **entry}


def _kill(child: _Child) -> None:
    try:
        os.killpg(child.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    os.waitpid(child.pid, 0)


def run(families: list[Family], tiny: bool, work: Path, options: dict, jobs: int, timeout_scale: float,
        deadline: float | None = None, echo=print) -> list[dict]:
    """Each family in a process of its own, ``jobs`` at a time, each within its timeout and the ``deadline``
    (time.monotonic()); a family the deadline leaves no time for is skipped. Entries in the families' order."""
    entries: dict[str, dict] = {}
    waiting = list(families)
    running: list[_Child] = []
    while waiting or running:
        while waiting and len(running) < jobs:
            family = waiting.pop(0)
            if family.folder is None or not (tiny or family.full_size):
                entries[family.name] = {"family": family.name, "slug": family.slug, "status": "skip", "jobs": [],
                                        "set": "core" if family.core else "optional",
                                        "reason": f"no {'tiny' if tiny else 'full-size'} folder" + (
                                            f": {family.note}" if family.note else "")}
                continue
            timeout = (family.tiny_timeout if tiny else family.timeout) * timeout_scale
            if deadline is not None:
                if deadline - time.monotonic() < 30:
                    # Not run is not passed: the exit status says the check is incomplete.
                    entries[family.name] = {"family": family.name, "slug": family.slug, "status": "fail", "jobs": [],
                                            "set": "core" if family.core else "optional",
                                            "error": "not run: no time left before --deadline"}
                    continue
                timeout = min(timeout, deadline - time.monotonic())
            running.append(_start(family, work, options, timeout))
            echo(f"[gpu_check] {family.name}: started (timeout {timeout:.0f} s)")
        time.sleep(0.05)
        for child in list(running):
            pid, status = os.waitpid(child.pid, os.WNOHANG)
            if pid == 0 and time.monotonic() - child.started < child.timeout:
                continue
            if pid == 0:
                _kill(child)
                status = None
            running.remove(child)
            entries[child.family.name] = _finished(child, status)
            if not options.get("keep"):  # its model folder and Whisper's 3 GB conversion; log and result stay
                shutil.rmtree(child.folder / "home", ignore_errors=True)
            entry = entries[child.family.name]
            echo(f"[gpu_check] {child.family.name}: {entry['status'].upper()} in {time.monotonic() - child.started:.1f} s"
                 + (f" ({entry['error'][:200]})" if entry.get("error") else ""))
    return [entries[f.name] for f in families]


def _chosen(args) -> list[Family]:
    if args.families:
        return [family_named(name.strip()) for name in args.families.split(",") if name.strip()]
    if args.all:
        return list(FAMILIES)
    return list(OPTIONAL if args.optional else CORE)


def _device_name(on_cpu: bool) -> str:
    if on_cpu:
        import platform

        return f"CPU ({os.cpu_count()} cores, {platform.machine()})"
    try:  # nvidia-smi, not torch: this process must not touch CUDA before it forks
        import subprocess

        out = subprocess.run(["nvidia-smi", "--query-gpu=name,memory.total", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=20)
        return out.stdout.strip().splitlines()[0] if out.returncode == 0 and out.stdout.strip() else "no GPU found"
    except (OSError, subprocess.SubprocessError):
        return "no GPU found (nvidia-smi is missing)"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tiny", action="store_true", help="tiny configs on the CPU (what CI runs)")
    parser.add_argument("--families", help="comma-separated family names or slugs (default: the core set)")
    parser.add_argument("--optional", action="store_true", help="the optional set instead of the core set")
    parser.add_argument("--all", action="store_true", help="both sets")
    parser.add_argument("--budget-bytes", type=float, help="plan as if the device had this many bytes (e.g. 24e9)")
    parser.add_argument("--out", type=Path, help="where the JSON report goes (default: WORK/report.json)")
    parser.add_argument("--work", type=Path, help="scratch folder: per family its log, result and drylocal home "
                        "(default: bench-output/gpu-check-MODE)")
    parser.add_argument("--inputs", type=Path, help="generated inputs to reuse (speech-source.wav; default WORK/inputs)")
    parser.add_argument("--keep", action="store_true", help="keep each family's drylocal home (its model folder, "
                        "Whisper's converted weights) after it ran")
    parser.add_argument("--jobs", type=int, help="families at a time (tiny default 2; a GPU runs one at a time)")
    parser.add_argument("--device", help="cuda (the default at full size), cuda:N, or cpu (tiny; a full-size family on "
                        "the CPU is slow but checks the full-size path where there is no GPU)")
    parser.add_argument("--timeout-scale", type=float, default=1.0, help="multiply every family's timeout")
    parser.add_argument("--deadline", type=float, help="seconds for the whole check: later families are skipped and a "
                        "running one is stopped in time for the report to be written (a device call's limit)")
    parser.add_argument("--plant", help="FAMILY:raise or FAMILY:nan, comma-separated: planted failures that the "
                        "report must show (the kit's own tests)")
    parser.add_argument("--list", action="store_true", help="list the families and exit")
    parser.add_argument("--prepare-inputs", type=Path, metavar="DIR", help="write the speech source into DIR and exit")
    args = parser.parse_args(argv)

    if args.list:
        for family in FAMILIES:
            sizes = [name for name, ok in (("tiny", family.folder is not None),
                                           ("full", family.folder is not None and family.full_size)) if ok]
            print(f"{family.name:22} {family.slug:32} {'core' if family.core else 'optional':9} {' + '.join(sizes)}")
        return 0
    if args.prepare_inputs:
        from scripts.gpu_kit.inputs import speech_source

        print(speech_source(args.prepare_inputs))
        return 0

    families = _chosen(args)
    jobs = 1 if not args.tiny else max(1, args.jobs or 2)
    _environment(args.tiny, max(1, (os.cpu_count() or 2) // jobs))
    work = (args.work or ROOT / "bench-output" / f"gpu-check-{'tiny' if args.tiny else 'full'}").resolve()
    work.mkdir(parents=True, exist_ok=True)
    plants = dict(item.split(":", 1) for item in (args.plant or "").split(",") if ":" in item)
    options = {"tiny": args.tiny, "inputs": str((args.inputs or work / "inputs").resolve()),
               "budget_bytes": int(args.budget_bytes) if args.budget_bytes else None,
               "plants": plants, "keep": args.keep, "device": args.device}
    if args.tiny:
        import importlib

        for name in _PRELOAD:  # imported once here; every family's forked process starts with them
            importlib.import_module(name)
    started = time.monotonic()
    deadline = started + args.deadline if args.deadline else None
    entries = run(families, args.tiny, work, options, jobs, args.timeout_scale, deadline)
    on_cpu = args.tiny if args.device is None else not args.device.startswith("cuda")
    report = {"mode": "tiny" if args.tiny else "full", "device": _device_name(on_cpu), "budget_bytes": options["budget_bytes"],
              "wall_seconds": time.monotonic() - started, "families": entries}
    out = args.out or work / "report.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=1, default=str))
    print(table(report))
    print(f"\nreport: {out}")
    return 1 if failed(report) else 0


if __name__ == "__main__":
    sys.exit(main())
