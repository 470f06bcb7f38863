"""``drylocal bench``: what this box does with a workload, model by model, measured as a client sees it.

A workload is a list of job kinds (task, model, request, how many, arriving how often). Jobs go in on
their arrival schedule through the public API, against a running drylocal (``--url`` and ``--key``) or
one this command serves on a thread of its own process, on the data folder (``server.harness``).
Everything it reports comes over HTTP: latencies from its own clock, prices from
``/price-calculation``, loads, evictions, run times and memory from ``/metrics``; only the process's
resident memory, when the server runs in it, is read from the OS. The report, per model: cold load
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
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from server.cli._bench_report import Job, Samples, plot, summarize, table
from server.harness import API, FINISHED, ApiClient, ServerThread, pauses

__all__ = ("Kind", "add_parser", "run_bench")

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

    @property
    def request(self) -> dict[str, Any]:
        """The body as httpx sends it: JSON, or a multipart form for the upload routes."""
        return {"json": self.json} if self.json is not None else {"files": self.files, "data": self.data}


# ------------------------------------------------------------------ workloads
def _ocr_image() -> bytes:
    from PIL import Image, ImageDraw, ImageFont

    image = Image.new("RGB", (640, 110), "white")
    ImageDraw.Draw(image).text((24, 30), "INVOICE 2041 TOTAL 318.50", fill="black", font=ImageFont.load_default(size=32))
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


def default_mix(client: ApiClient, scale: int) -> list[Kind]:
    """The embedded defaults, which every fresh install serves offline."""
    speech = client.run("txt2audio", json={"text": SENTENCE, "model": "Piper_en_US_Joe", "format": "wav", "lang": "en-us"})
    audio = client.http.get(speech["result_url"]).content
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


# ------------------------------------------------------------------ driving the API
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
    try:
        response = await http.post(f"{API}/{kind.task}", **kind.request)
    except httpx.TransportError as exc:  # not retried: the job may have been queued; one lost job, not the run
        job.status, job.error, job.finished = "lost", repr(exc), time.monotonic()
        return
    if response.status_code != 200:
        job.status, job.error, job.finished = "refused", response.text[:200], time.monotonic()
        return
    request_id = response.json()["data"]["request_id"]
    for pause in pauses(0.1):
        data = await _status(http, request_id)
        if data["status"] in FINISHED:
            job.status, job.finished = data["status"], time.monotonic()
            job.error = data.get("error_message")
            return
        await asyncio.sleep(pause)


def _scrape(client: ApiClient) -> dict[str, Any]:
    """The engine's counters as ``/metrics`` shows them (empty where the key may not read them)."""
    from prometheus_client.parser import text_string_to_metric_families

    found: dict[str, Any] = {"load_seconds": {}, "run_seconds": {}, "model_memory": {}}
    response = client.http.get("/metrics")
    if response.status_code != 200:  # a guest's key may not read the metrics: the report goes without them
        return found
    totals = {"drylocal_memory_in_use_bytes": "memory", "drylocal_model_loads_total": "loads",
              "drylocal_model_evictions_total": "evictions", "drylocal_model_unparks_total": "unparks"}
    per_model = {"drylocal_model_memory_bytes": "model_memory", "drylocal_model_load_seconds": "load_seconds"}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            if sample.name in totals:
                found[totals[sample.name]] = sample.value
            elif sample.name in per_model:
                found[per_model[sample.name]][sample.labels["model"]] = sample.value
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


async def _sample_memory(client: ApiClient, samples: Samples, stop: asyncio.Event, in_process: bool) -> None:
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


async def _drive(client: ApiClient, kinds: list[Kind], poisson: bool, seed: int,
                 in_process: bool) -> tuple[list[Job], Samples]:
    """Every job on its arrival schedule, concurrently, while ``/metrics`` is sampled."""
    rng = random.Random(seed)
    jobs: list[Job] = []
    samples = Samples()
    stop = asyncio.Event()
    sampler = asyncio.create_task(_sample_memory(client, samples, stop, in_process))
    async with client.asynchronous() as http:
        await asyncio.gather(*(
            _one_job(http, kind, delay, jobs) for kind in kinds for delay in _arrivals(kind, rng, poisson)
        ))
    stop.set()
    await sampler
    samples.metrics = await asyncio.to_thread(_scrape, client)
    return jobs, samples


def _prices(client: ApiClient, kinds: list[Kind]) -> dict[str, float | None]:
    """What the hosted dryAPI would charge for one job of each kind."""
    prices = {}
    for kind in kinds:
        response = client.http.post(f"{API}/{kind.task}/price-calculation", **kind.request)
        prices[kind.name] = response.json()["data"]["price"] if response.status_code == 200 else None
    return prices


# ------------------------------------------------------------------ entry points
def _workload(args: argparse.Namespace, client: ApiClient, scale: int) -> list[Kind]:
    if args.trace:
        return kinds_from_trace(Path(args.trace))
    kinds = WORKLOADS[args.workload](client, scale)
    if args.task:
        kinds = [k for k in kinds if k.task == args.task]
    if args.model:
        kinds = [k for k in kinds if k.model == args.model]
    return kinds


def run_bench(args: argparse.Namespace) -> dict[str, Any]:
    scale = 1 if args.short else args.scale
    in_process = not args.url
    # Litestar logs the root logger at INFO; the bench's own polling would bury the table.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    with contextlib.ExitStack() as stack:
        if in_process:
            from engine import Settings

            settings = Settings.load(**({"home": Path(args.home)} if args.home else {}))
            # A model load in this process holds the GIL for seconds; with uvicorn's 5 s keep-alive the server
            # then closes pooled connections just as the bench reuses them (httpx.ReadError). Keep them open longer.
            server = stack.enter_context(ServerThread(settings, account="drylocal-bench", keep_alive_seconds=300,
                                                      provision=True))
            client, home = server.client(), server.settings.home
        else:
            client, home = stack.enter_context(contextlib.closing(ApiClient(args.url, args.key, timeout=300))), None
        kinds = _workload(args, client, scale)
        if not kinds:
            raise SystemExit("drylocal bench: the workload is empty (check --task / --model)")
        prices = _prices(client, kinds)
        before = _scrape(client)
        jobs, samples = asyncio.run(_drive(client, kinds, args.poisson, args.seed, in_process))
        report = summarize(kinds, jobs, samples, before, prices, args.power_watts, args.kwh_price, in_process)
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


def bench(args: argparse.Namespace) -> int:
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


def add_parser(commands) -> None:
    parser = commands.add_parser("bench", help="measure this machine on a workload")
    parser.add_argument("--url", help="a running drylocal (default: serve one in this process)")
    parser.add_argument("--key", help="API key for --url")
    parser.add_argument("--home", help="data folder for the in-process server (default: DRYLOCAL_HOME)")
    parser.add_argument("--task", help="only this task of the default mix")
    parser.add_argument("--model", help="only this model of the default mix")
    parser.add_argument("--workload", choices=sorted(WORKLOADS), default="default-mix", help="a built-in workload")
    parser.add_argument("--trace", help="a JSON workload: [{task, model, body, files?, count, rate_per_s}]")
    parser.add_argument("--scale", type=int, default=5, help="jobs per kind, in units of the default mix")
    parser.add_argument("--short", action="store_true", help="a few jobs per kind (CI)")
    parser.add_argument("--poisson", action="store_true", help="random (Poisson) arrivals instead of regular ones")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--power-watts", type=float, default=None, help="device power while busy (default: 300 GPU, 65 CPU)")
    parser.add_argument("--kwh-price", type=float, default=0.30, help="electricity price per kWh in USD")
    parser.add_argument("--out", help="folder for report.json and the plots")
    parser.set_defaults(func=bench)
