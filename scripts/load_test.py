"""Load test: many real HTTP clients on 127.0.0.1 submitting and polling jobs on the embedded defaults.

Phase 1: ``--clients`` clients, each a loop of submit (txt2embedding) then poll to the end, for
``--seconds``. Every accepted job must reach ``done`` and no answer may be a 5xx.
Phase 2: a long job (WhisperBase transcribing speech the Piper voice made) occupies the GPU executor
while a prober times ``request-status`` and ``models``: the API must stay responsive.

    .venv/bin/python scripts/load_test.py --clients 50 --seconds 60 [--json out.json]

Exit status 1 when a promise is broken (a 5xx, a lost job, a slow API), so CI can run a short form.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from server.harness import API, FINISHED, ServerProcess, pauses  # noqa: E402

PARAGRAPH = " ".join(
    [
        "The committee met on Tuesday to review the harbour project.",
        "Funding for the second phase was approved after a long discussion about costs.",
        "Construction will begin in the spring and should finish within two years.",
        "Residents asked for quieter machines at night and more frequent updates.",
    ]
)


def percentile(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q / 100 * (len(ordered) - 1))))]


class Tally:
    def __init__(self) -> None:
        self.submit_seconds: list[float] = []
        self.accepted: list[str] = []
        self.done = 0
        self.failed: list[dict] = []
        self.server_errors: list[str] = []
        self.refused: dict[int, int] = {}


async def poll(http: httpx.AsyncClient, request_id: str) -> httpx.Response:
    """A status poll, sent again once where the pooled connection it went out on had just been closed by the
    server as idle (a race of the client's pool, not an answer: a poll is safe to repeat)."""
    try:
        return await http.get(f"{API}/request-status/{request_id}")
    except (httpx.ReadError, httpx.RemoteProtocolError):
        return await http.get(f"{API}/request-status/{request_id}")


async def client_loop(http: httpx.AsyncClient, deadline: float, tally: Tally, index: int) -> None:
    sequence = 0
    while time.monotonic() < deadline:
        sequence += 1
        started = time.perf_counter()
        response = await http.post(f"{API}/txt2embedding", json={"input": f"client {index} text {sequence}", "model": "MiniLM_L6_v2"})
        tally.submit_seconds.append(time.perf_counter() - started)
        if response.status_code >= 500:
            tally.server_errors.append(f"POST txt2embedding {response.status_code}")
            continue
        if response.status_code != 200:
            tally.refused[response.status_code] = tally.refused.get(response.status_code, 0) + 1
            continue
        request_id = response.json()["data"]["request_id"]
        tally.accepted.append(request_id)
        for pause in pauses(0.5, first=0.02):
            status = await poll(http, request_id)
            if status.status_code >= 500:
                tally.server_errors.append(f"GET request-status {status.status_code}")
                break
            data = status.json()["data"]
            if data["status"] == "done":
                tally.done += 1
                break
            if data["status"] == "error":
                tally.failed.append({"request_id": request_id, **data})
                break
            await asyncio.sleep(pause)


async def load_phase(server: ServerProcess, clients: int, seconds: float) -> dict:
    tally = Tally()
    limits = httpx.Limits(max_connections=clients + 4, max_keepalive_connections=clients + 4)
    async with server.client().asynchronous(timeout=120, limits=limits) as http:
        started = time.monotonic()
        deadline = started + seconds
        await asyncio.gather(*(client_loop(http, deadline, tally, i) for i in range(clients)))
        elapsed = time.monotonic() - started
    return {
        "clients": clients,
        "seconds": round(elapsed, 2),
        "accepted": len(tally.accepted),
        "done": tally.done,
        "failed": tally.failed[:5],
        "failed_count": len(tally.failed),
        "server_errors": len(tally.server_errors),
        "refused": tally.refused,
        "jobs_per_second": round(tally.done / elapsed, 2),
        "submit_p50_ms": round(1000 * percentile(tally.submit_seconds, 50), 2),
        "submit_p99_ms": round(1000 * percentile(tally.submit_seconds, 99), 2),
    }


async def responsiveness_phase(server: ServerProcess, paragraphs: int) -> dict:
    """Times status and models requests while one long job holds the GPU executor. The status probed is
    a finished job's: an unfinished job's poll is held until it ends (status_hold_seconds) by design."""
    client = server.client()
    text = " ".join([PARAGRAPH] * paragraphs)
    spoken = client.submit("txt2audio", json={"text": text, "model": "Piper_en_US_Joe", "lang": "en-us",
                                              "format": "wav", "speed": 1, "sample_rate": 22050})
    speech = client.wait(spoken)
    audio = client.http.get(speech["result_url"]).content
    async with client.asynchronous(timeout=120) as http:
        response = await http.post(
            f"{API}/audiofile2txt", data={"model": "WhisperBase", "include_ts": "false"},
            files={"audio": ("speech.wav", audio, "audio/wav")},
        )
        request_id = response.json()["data"]["request_id"]

        async def long_job() -> dict:
            while (status := (await http.get(f"{API}/request-status/{request_id}")).json()["data"])["status"] not in FINISHED:
                await asyncio.sleep(0.02)
            return status

        started = time.monotonic()
        ending = asyncio.create_task(long_job())
        timings: dict[str, list[float]] = {"request-status": [], "models": []}
        while not ending.done():
            t0 = time.perf_counter()
            await http.get(f"{API}/request-status/{spoken}")
            timings["request-status"].append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            await http.get(f"{API}/models", params={"per_page": 50})
            timings["models"].append(time.perf_counter() - t0)
            await asyncio.sleep(0.02)
        status = await ending
        busy_seconds = time.monotonic() - started
    return {
        "long_job": "audiofile2txt WhisperBase",
        "long_job_status": status["status"],
        "long_job_seconds": round(busy_seconds, 2),
        "probes": len(timings["models"]),
        **{f"{route}_p50_ms": round(1000 * percentile(values, 50), 2) for route, values in timings.items()},
        **{f"{route}_p99_ms": round(1000 * percentile(values, 99), 2) for route, values in timings.items()},
    }


def broken_promises(report: dict, max_api_p99_ms: float) -> list[str]:
    load, api = report["load"], report["responsiveness"]
    problems = []
    if load["server_errors"]:
        problems.append(f"{load['server_errors']} answers were 5xx")
    if load["done"] != load["accepted"]:
        problems.append(f"{load['accepted'] - load['done']} accepted jobs did not reach done")
    if api["long_job_status"] != "done":
        problems.append("the long job did not finish")
    for route in ("request-status", "models"):
        if api[f"{route}_p99_ms"] > max_api_p99_ms:
            problems.append(f"{route} p99 {api[f'{route}_p99_ms']} ms > {max_api_p99_ms} ms during the long job")
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--max-api-p99-ms", type=float, default=50)
    parser.add_argument("--long-job-paragraphs", type=int, default=3, help="length of the long job's speech")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as home:
        with ServerProcess(Path(home)) as server:
            server.client().run("txt2embedding", json={"input": "warm up", "model": "MiniLM_L6_v2"})
            report = {"load": asyncio.run(load_phase(server, args.clients, args.seconds))}
            report["responsiveness"] = asyncio.run(responsiveness_phase(server, args.long_job_paragraphs))
    report["broken_promises"] = broken_promises(report, args.max_api_p99_ms)
    text = json.dumps(report, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text)
    return 1 if report["broken_promises"] else 0


if __name__ == "__main__":
    sys.exit(main())
