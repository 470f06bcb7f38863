"""What ``drylocal bench`` makes of its jobs and samples: the report (a dict, saved as report.json), the
table it prints, and its two plots."""

from __future__ import annotations

import resource
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ("Job", "Samples", "plot", "summarize", "table")


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
    """What the bench saw of the server while the jobs ran: ``/metrics`` over time, and this process's RSS."""

    started: float = field(default_factory=time.monotonic)
    memory: list[tuple[float, float]] = field(default_factory=list)
    per_model: dict[str, float] = field(default_factory=dict)  # peak memory each model was seen holding
    rss: list[tuple[float, int]] = field(default_factory=list)  # this process, when the server runs in it
    metrics: dict[str, Any] = field(default_factory=dict)


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))] if ordered else 0.0


def summarize(kinds: list, jobs: list[Job], samples: Samples, before: dict, prices: dict[str, float | None],
              power_watts: float, kwh_price: float, in_process: bool) -> dict[str, Any]:
    """Per kind of job: cold load, warm latency, throughput, run time, peak memory and cost per job."""
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
    """latency.png (a box per kind of job) and memory.png (models' memory, and the process's, over time)."""
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
