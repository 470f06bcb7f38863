"""``drylocal bench``: what this box does with a workload, model by model.

A workload is a list of job kinds (task, model, request, how many, arriving how often). Jobs go in on
their arrival schedule through the public API, as any client's would, against a running drylocal
(``--url``) or one started in this process on the data folder. The report, per model: cold load
time, warm latency p50/p95, throughput, peak memory, model loads and evictions, and the cost per job
at dryAPI's prices beside the local energy cost. A table, ``report.json``, and two PNG plots.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import json
import logging
import os
import random
import resource
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import httpx

__all__ = ("Job", "Kind", "add_parser", "run_bench")

API = "/api/v1/client"
SENTENCE = "The harbour committee approved the second phase after a long discussion about costs."


@dataclass
class Kind:
    """One kind of job in a workload."""

    name: str
    task: str
    model: str
    json: dict[str, Any] | None = None
    files: dict[str, tuple[str, bytes, str]] | None = None
    data: dict[str, str] | None = None
    count: int = 10
    rate_per_s: float = 2.0


@dataclass
class Job:
    kind: str
    model: str
    submitted: float
    finished: float | None = None
    status: str = "pending"
    error: str | None = None

    @property
    def latency(self) -> float | None:
        return None if self.finished is None else self.finished - self.submitted


@dataclass
class Samples:
    started: float = field(default_factory=time.monotonic)
    memory: list[tuple[float, float]] = field(default_factory=list)
    per_model: dict[str, float] = field(default_factory=dict)  # peak memory each model was seen holding
    rss: list[tuple[float, int]] = field(default_factory=list)  # this process, when the server runs in it
    metrics: dict[str, Any] = field(default_factory=dict)


# ------------------------------------------------------------------ workloads
def _ocr_image() -> bytes:
    from PIL import Image, ImageDraw, ImageFont

    image = Image.new("RGB", (640, 110), "white")
    ImageDraw.Draw(image).text((24, 30), "INVOICE 2041 TOTAL 318.50", fill="black", font=ImageFont.load_default(size=32))
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


def default_mix(client: httpx.Client, scale: int) -> list[Kind]:
    """The embedded defaults, which every fresh install serves offline."""
    speech = _run(client, "txt2audio", json={"text": SENTENCE, "model": "Piper_en_US_Joe", "format": "wav", "lang": "en-us"})
    audio = client.get(speech["result_url"]).content
    return [
        Kind("embeddings", "txt2embedding", "MiniLM_L6_v2", json={"input": SENTENCE, "model": "MiniLM_L6_v2"},
             count=8 * scale, rate_per_s=8.0),
        Kind("speech", "txt2audio", "Piper_en_US_Joe",
             json={"text": SENTENCE, "model": "Piper_en_US_Joe", "format": "wav", "lang": "en-us"}, count=2 * scale, rate_per_s=1.0),
        Kind("ocr", "img2txt", "PP_OCRv4", files={"image": ("scan.png", _ocr_image(), "image/png")},
             data={"model": "PP_OCRv4"}, count=2 * scale, rate_per_s=1.0),
        Kind("transcription", "audiofile2txt", "WhisperBase", files={"audio": ("speech.wav", audio, "audio/wav")},
             data={"model": "WhisperBase"}, count=scale, rate_per_s=0.5),
    ]


def kinds_from_trace(path: Path) -> list[Kind]:
    """A JSON list of {name?, task, model, body, files?, count, rate_per_s}.

    Bodies go as JSON; an entry with ``files`` ({field: path}, relative to the trace) goes as a multipart
    form instead, the way the upload routes (img2txt, audiofile2txt, ...) take it.
    """
    entries = json.loads(path.read_text())
    kinds = []
    for entry in entries:
        body = {"model": entry["model"], **entry.get("body", {})}
        uploads = {name: path.parent / file for name, file in entry.get("files", {}).items()}
        kinds.append(Kind(
            entry.get("name") or f"{entry['task']}:{entry['model']}", entry["task"], entry["model"],
            json=None if uploads else body,
            files={name: (file.name, file.read_bytes(), "application/octet-stream") for name, file in uploads.items()} or None,
            data={k: v if isinstance(v, str) else json.dumps(v) for k, v in body.items()} if uploads else None,
            count=int(entry.get("count", 10)), rate_per_s=float(entry.get("rate_per_s", 2.0)),
        ))
    return kinds


WORKLOADS = {"default-mix": default_mix}


# ------------------------------------------------------------------ running
def _run(client: httpx.Client, route: str, **request) -> dict:
    response = client.post(f"{API}/{route}", **request)
    response.raise_for_status()
    request_id = response.json()["data"]["request_id"]
    while (data := client.get(f"{API}/request-status/{request_id}").json()["data"])["status"] not in ("done", "error"):
        time.sleep(0.05)
    if data["status"] != "done":
        raise RuntimeError(f"{route} failed: {data.get('error_message')}")
    return data


def _arrivals(kind: Kind, rng: random.Random, poisson: bool) -> list[float]:
    """Seconds from the start at which each job of ``kind`` arrives."""
    at, times = 0.0, []
    for _ in range(kind.count):
        times.append(at)
        at += rng.expovariate(kind.rate_per_s) if poisson else 1.0 / kind.rate_per_s
    return times


async def _status(http: httpx.AsyncClient, request_id: str, attempts: int = 5) -> dict[str, Any]:
    """A poll is idempotent, so a connection the server closed as idle is simply retried."""
    for attempt in range(attempts):
        try:
            return (await http.get(f"{API}/request-status/{request_id}")).json()["data"]
        except httpx.TransportError:
            if attempt == attempts - 1:
                raise
            await asyncio.sleep(0.1 * (attempt + 1))
    raise AssertionError("unreachable")


async def _one_job(http: httpx.AsyncClient, kind: Kind, delay: float, jobs: list[Job]) -> None:
    await asyncio.sleep(delay)
    job = Job(kind.name, kind.model, time.monotonic())
    jobs.append(job)
    request = {"json": kind.json} if kind.json is not None else {"files": kind.files, "data": kind.data}
    try:
        response = await http.post(f"{API}/{kind.task}", **request)
    except httpx.TransportError as exc:  # not retried: the job may have been queued; one lost job, not the run
        job.status, job.error, job.finished = "lost", repr(exc), time.monotonic()
        return
    if response.status_code != 200:
        job.status, job.error, job.finished = "refused", response.text[:200], time.monotonic()
        return
    request_id = response.json()["data"]["request_id"]
    pause = 0.01
    while True:
        data = await _status(http, request_id)
        if data["status"] in ("done", "error"):
            job.status, job.finished = data["status"], time.monotonic()
            job.error = data.get("error_message")
            return
        await asyncio.sleep(pause)
        pause = min(pause * 1.5, 0.1)


def _scrape(client: httpx.Client) -> dict[str, Any]:
    from prometheus_client.parser import text_string_to_metric_families

    found: dict[str, Any] = {"load_seconds": {}, "run_seconds": {}, "model_memory": {}}
    response = client.get("/metrics")
    if response.status_code != 200:  # a guest's key may not read the metrics: the report goes without them
        return found
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            if sample.name == "drylocal_memory_in_use_bytes":
                found["memory"] = sample.value
            elif sample.name == "drylocal_model_loads_total":
                found["loads"] = sample.value
            elif sample.name == "drylocal_model_evictions_total":
                found["evictions"] = sample.value
            elif sample.name == "drylocal_model_unparks_total":
                found["unparks"] = sample.value
            elif sample.name == "drylocal_model_memory_bytes":
                found["model_memory"][sample.labels["model"]] = sample.value
            elif sample.name == "drylocal_model_load_seconds":
                found["load_seconds"][sample.labels["model"]] = sample.value
            elif sample.name == "drylocal_job_run_seconds_sum":
                task = sample.labels["task"]
                found["run_seconds"][task] = found["run_seconds"].get(task, 0.0) + sample.value
    return found


def _process_rss() -> int | None:
    """This process's resident memory now; ``ru_maxrss`` only gives the peak, not a curve. Linux only."""
    try:
        return int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return None


async def _sample_memory(client: httpx.Client, samples: Samples, stop: asyncio.Event, in_process: bool) -> None:
    while not stop.is_set():
        scraped = await asyncio.to_thread(_scrape, client)
        now = time.monotonic() - samples.started
        samples.memory.append((now, scraped.get("memory", 0.0)))
        for slug, held in scraped["model_memory"].items():
            samples.per_model[slug] = max(held, samples.per_model.get(slug, 0.0))
        if in_process and (rss := _process_rss()) is not None:
            samples.rss.append((now, rss))
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(stop.wait(), 0.25)


async def _drive(base_url: str, key: str, kinds: list[Kind], poisson: bool, seed: int,
                 in_process: bool) -> tuple[list[Job], Samples]:
    rng = random.Random(seed)
    jobs: list[Job] = []
    samples = Samples()
    headers = {"Authorization": f"Bearer {key}"}
    with httpx.Client(base_url=base_url, headers=headers, timeout=120) as client:
        stop = asyncio.Event()
        sampler = asyncio.create_task(_sample_memory(client, samples, stop, in_process))
        async with httpx.AsyncClient(base_url=base_url, headers=headers, timeout=600) as http:
            await asyncio.gather(*(
                _one_job(http, kind, delay, jobs) for kind in kinds for delay in _arrivals(kind, rng, poisson)
            ))
        stop.set()
        await sampler
        samples.metrics = await asyncio.to_thread(_scrape, client)
    return jobs, samples


# ------------------------------------------------------------------ the report
def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))] if ordered else 0.0


def summarize(kinds: list[Kind], jobs: list[Job], samples: Samples, before: dict, prices: dict[str, float],
              power_watts: float, kwh_price: float, in_process: bool) -> dict[str, Any]:
    after = samples.metrics
    models: dict[str, Any] = {}
    for kind in kinds:
        mine = sorted((j for j in jobs if j.kind == kind.name), key=lambda j: j.submitted)
        done = [j for j in mine if j.status == "done" and j.latency is not None]
        latencies = [j.latency for j in done]
        warm = latencies[1:] or latencies
        span = (max(j.finished for j in done) - min(j.submitted for j in done)) if done else 0.0
        busy = after["run_seconds"].get(kind.task, 0.0) - before["run_seconds"].get(kind.task, 0.0)
        shares = sum(1 for k in kinds if k.task == kind.task)
        busy /= shares  # a task shared by several kinds: its run time split evenly between them
        energy_kwh = power_watts * busy / 3.6e6
        models[kind.name] = {
            "task": kind.task,
            "model": kind.model,
            "jobs": len(mine),
            "done": len(done),
            "failed": len(mine) - len(done),
            "cold_load_seconds": round(after["load_seconds"].get(kind.model, 0.0), 4),
            "first_job_seconds": round(latencies[0], 4) if latencies else None,
            "latency_p50_seconds": round(_percentile(warm, 50), 4),
            "latency_p95_seconds": round(_percentile(warm, 95), 4),
            "throughput_jobs_per_second": round(len(done) / span, 3) if span > 0 else 0.0,
            "busy_seconds": round(busy, 3),
            # Latency counts the wait in the queue; this is the executor's time per job alone.
            "service_seconds_per_job": round(busy / len(done), 4) if done else None,
            "peak_memory_bytes": int(samples.per_model.get(kind.model, 0.0)),
            "dryapi_price_per_job_usd": prices.get(kind.name),
            "energy_cost_per_job_usd": round(energy_kwh * kwh_price / max(1, len(done)), 8),
        }
    peak = max((m for _, m in samples.memory), default=after.get("memory", 0.0))
    return {
        "models": models,
        "peak_memory_bytes": int(peak),
        "peak_process_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 if in_process else None,
        "process_rss_over_time": [[round(t, 3), rss] for t, rss in samples.rss],
        "model_loads": int(after.get("loads", 0) - before.get("loads", 0)),
        "model_evictions": int(after.get("evictions", 0) - before.get("evictions", 0)),
        "model_unparks": int(after.get("unparks", 0) - before.get("unparks", 0)),
        "memory_over_time": [[round(t, 3), int(m)] for t, m in samples.memory],
        "latencies": {name: [round(j.latency, 4) for j in jobs if j.kind == name and j.latency is not None] for name in models},
    }


def _prices(client: httpx.Client, kinds: list[Kind]) -> dict[str, float]:
    prices = {}
    for kind in kinds:
        request = {"json": kind.json} if kind.json is not None else {"files": kind.files, "data": kind.data}
        response = client.post(f"{API}/{kind.task}/price-calculation", **request)
        prices[kind.name] = response.json()["data"]["price"] if response.status_code == 200 else None
    return prices


def table(report: dict[str, Any]) -> str:
    columns = [
        ("model", "model", "{}"), ("task", "task", "{}"), ("done", "done", "{}"),
        ("cold load s", "cold_load_seconds", "{:.3f}"), ("p50 s", "latency_p50_seconds", "{:.3f}"),
        ("p95 s", "latency_p95_seconds", "{:.3f}"), ("run s/job", "service_seconds_per_job", "{:.3f}"),
        ("jobs/s", "throughput_jobs_per_second", "{:.2f}"), ("peak MB", "peak_memory_bytes", "{}"),
        ("dryAPI $/job", "dryapi_price_per_job_usd", "{:.6f}"), ("energy $/job", "energy_cost_per_job_usd", "{:.8f}"),
    ]
    rows = [[title for title, _, _ in columns]]
    for values in report["models"].values():
        shown = {**values, "peak_memory_bytes": f"{values['peak_memory_bytes'] / 1e6:.0f}"}
        rows.append([fmt.format(shown[key]) if shown[key] is not None else "-" for _, key, fmt in columns])
    widths = [max(len(row[i]) for row in rows) for i in range(len(columns))]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(row, widths)) for row in rows]
    lines.insert(1, "  ".join("-" * width for width in widths))
    lines.append(
        f"peak model memory {report['peak_memory_bytes'] / 1e6:.1f} MB, loads {report['model_loads']}, "
        f"evictions {report['model_evictions']}, unparks from RAM {report.get('model_unparks', 0)}"
        + (f", peak process RSS {report['peak_process_rss_bytes'] / 1e6:.0f} MB" if report["peak_process_rss_bytes"] else "")
    )
    return "\n".join(lines)


def plot(report: dict[str, Any], folder: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")  # files only: no display on a server
    import matplotlib.pyplot as plt

    names = [name for name, values in report["latencies"].items() if values]
    figure, axes = plt.subplots(figsize=(8, 4))
    if names:
        axes.boxplot([report["latencies"][n] for n in names], tick_labels=names, showfliers=True)
    axes.set_ylabel("latency (s)")
    axes.set_title("Job latency by model")
    latency = _save(plt, figure, folder / "latency.png")

    figure, axes = plt.subplots(figsize=(8, 4))
    points = report["memory_over_time"]
    axes.plot([t for t, _ in points], [m / 1e6 for _, m in points], drawstyle="steps-post", label="models (/metrics)")
    if rss := report.get("process_rss_over_time"):
        axes.plot([t for t, _ in rss], [m / 1e6 for _, m in rss], label="process RSS")
    axes.legend()
    axes.set_xlabel("time (s)")
    axes.set_ylabel("memory (MB)")
    axes.set_title("Memory in use over the run")
    return [latency, _save(plt, figure, folder / "memory.png")]


def _save(plt, figure, path: Path) -> Path:
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path


# ------------------------------------------------------------------ entry points
@contextlib.contextmanager
def _in_process_server(home: Path | None) -> Iterator[tuple[str, str, Path]]:
    """drylocal on a free port of this machine, on the data folder, with a key of its own."""
    from engine import Settings
    from engine.accounts import AccountStore
    from engine.database import Database
    from model_registry.embedded import provision_embedded
    from server.app import create_app
    from server.threaded import free_port, serving_in_thread

    port = free_port()
    settings = Settings.load(**({"home": home} if home else {}), port=port)
    settings.ensure_dirs()
    provision_embedded(settings.models_dir)
    store = AccountStore(Database(settings.db_path))
    account = store.find_account("drylocal-bench") or store.create_account("drylocal-bench", tier="unlimited")
    key = store.create_key(account, "drylocal-bench")
    # A model load in this process holds the GIL for seconds; with uvicorn's 5 s keep-alive the server then
    # closes pooled connections just as the bench reuses them (httpx.ReadError). Keep them open longer.
    try:
        with serving_in_thread(create_app(settings), port, timeout_keep_alive=300):
            yield f"http://127.0.0.1:{port}", key, settings.home
    finally:
        store.revoke_key("drylocal-bench")


def run_bench(args: argparse.Namespace) -> dict[str, Any]:
    scale = 1 if args.short else args.scale
    # Litestar logs the root logger at INFO; the bench's own polling would bury the table.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    with contextlib.ExitStack() as stack:
        if args.url:
            base_url, key, home = args.url.rstrip("/"), args.key, None
        else:
            base_url, key, home = stack.enter_context(_in_process_server(Path(args.home) if args.home else None))
        with httpx.Client(base_url=base_url, headers={"Authorization": f"Bearer {key}"}, timeout=300) as client:
            if args.trace:
                kinds = kinds_from_trace(Path(args.trace))
            else:
                kinds = WORKLOADS[args.workload](client, scale)
                if args.task:
                    kinds = [k for k in kinds if k.task == args.task]
                if args.model:
                    kinds = [k for k in kinds if k.model == args.model]
            if not kinds:
                raise SystemExit("drylocal bench: the workload is empty (check --task / --model)")
            prices = _prices(client, kinds)
            before = _scrape(client)
        jobs, samples = asyncio.run(_drive(base_url, key, kinds, args.poisson, args.seed, not args.url))
        report = summarize(kinds, jobs, samples, before, prices, args.power_watts, args.kwh_price, not args.url)
    report["settings"] = {
        "url": args.url or "in-process", "workload": args.trace or args.workload, "scale": scale, "poisson": args.poisson,
        "seed": args.seed, "power_watts": args.power_watts, "kwh_price_usd": args.kwh_price,
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    folder = Path(args.out) if args.out else Path("bench-output") / time.strftime("%Y%m%d-%H%M%S")
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "report.json").write_text(json.dumps(report, indent=2))
    report["plots"] = [str(p) for p in plot(report, folder)]
    if home is not None:  # the dashboard shows the last report of its own data folder
        (home / "bench").mkdir(exist_ok=True)
        shutil.copyfile(folder / "report.json", home / "bench" / "last-report.json")
    print(table(report))
    print(f"report: {folder / 'report.json'}; plots: {', '.join(report['plots'])}")
    return report


def add_parser(commands) -> None:
    bench = commands.add_parser("bench", help="measure this machine on a workload")
    bench.add_argument("--url", help="a running drylocal (default: start one in this process)")
    bench.add_argument("--key", help="API key for --url")
    bench.add_argument("--home", help="data folder for the in-process server (default: DRYLOCAL_HOME)")
    bench.add_argument("--task", help="only this task of the default mix")
    bench.add_argument("--model", help="only this model of the default mix")
    bench.add_argument("--workload", choices=sorted(WORKLOADS), default="default-mix", help="a built-in workload")
    bench.add_argument("--trace", help="a JSON workload: [{task, model, body, files?, count, rate_per_s}]")
    bench.add_argument("--scale", type=int, default=5, help="jobs per kind, in units of the default mix")
    bench.add_argument("--short", action="store_true", help="a few jobs per kind (CI)")
    bench.add_argument("--poisson", action="store_true", help="random (Poisson) arrivals instead of regular ones")
    bench.add_argument("--seed", type=int, default=0)
    bench.add_argument("--power-watts", type=float, default=None, help="device power while busy (default: 300 GPU, 65 CPU)")
    bench.add_argument("--kwh-price", type=float, default=0.30, help="electricity price per kWh in USD")
    bench.add_argument("--out", help="folder for report.json and the plots")
    bench.set_defaults(func=_cmd_bench)


def _cmd_bench(args: argparse.Namespace) -> int:
    if args.url and not args.key:
        raise SystemExit("drylocal bench: --url needs --key")
    if args.power_watts is None:
        args.power_watts = 300.0 if _has_cuda() else 65.0
    report = run_bench(args)
    return 0 if all(m["failed"] == 0 for m in report["models"].values()) else 1


def _has_cuda() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return torch.cuda.is_available()
