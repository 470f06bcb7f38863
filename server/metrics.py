"""``GET /metrics``: the engine in Prometheus' text format, for the scrapers and dashboards users run.

Counts and gauges are read from the engine at scrape time (so they are right after a restart, and cost
nothing between scrapes); wait and run times are histograms fed by the engine's status events.
"""

from __future__ import annotations

from typing import Iterator

from litestar import Request, Response, get
from prometheus_client import CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from engine import Engine
from engine.errors import Forbidden
from engine.events import JobEvent
from server.auth import bearer_key

__all__ = ("EngineMetrics", "ROUTES")

# From an embedding (milliseconds) to a long video job (many minutes).
_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, float("inf"))


class EngineMetrics:
    """One registry per app, so several apps in one process (tests) never share series."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.registry = CollectorRegistry(auto_describe=True)
        self.registry.register(self)
        self.wait = Histogram(
            "drylocal_job_wait_seconds", "Time from submission to the start of processing.", ["task"],
            registry=self.registry, buckets=_BUCKETS,
        )
        self.run = Histogram(
            "drylocal_job_run_seconds", "Time from the start of processing to done or error.", ["task", "status"],
            registry=self.registry, buckets=_BUCKETS,
        )

    async def on_event(self, event: JobEvent) -> None:
        if event.status not in ("processing", "done", "error") or event.status == event.previous_status:
            return
        if event.started_at is None or event.created_at is None:
            return
        if event.status == "processing":
            self.wait.labels(event.task).observe(max(0.0, event.started_at - event.created_at))
        elif event.finished_at is not None:
            self.run.labels(event.task, event.status).observe(max(0.0, event.finished_at - event.started_at))

    def collect(self) -> Iterator[Metric]:
        serving = self.engine.serving()
        jobs = GaugeMetricFamily("drylocal_jobs", "Jobs in the job store by task and status.", labels=["task", "status"])
        for (task, status), count in sorted(self.engine.job_counts().items()):
            jobs.add_metric([task, status], count)
        yield jobs
        yield GaugeMetricFamily("drylocal_queue_depth", "Jobs waiting for the GPU executor.", value=serving.queue_depth)
        resident = serving.resident
        yield GaugeMetricFamily(
            "drylocal_memory_in_use_bytes", "Memory taken by the loaded models.", value=sum(m.memory_bytes for m in resident)
        )
        yield GaugeMetricFamily(
            "drylocal_memory_budget_bytes", "Memory the scheduler may fill with models.", value=serving.budget_bytes
        )
        per_model = GaugeMetricFamily("drylocal_model_memory_bytes", "Memory of each loaded model.", labels=["model"])
        load_time = GaugeMetricFamily("drylocal_model_load_seconds", "How long each model's last load took.", labels=["model"])
        for stats in resident:
            per_model.add_metric([stats.slug], stats.memory_bytes)
        for slug, seconds in sorted(serving.load_seconds.items()):
            load_time.add_metric([slug], seconds)
        yield per_model
        yield load_time
        yield CounterMetricFamily("drylocal_model_loads", "Models loaded since start.", value=serving.loads)
        yield CounterMetricFamily("drylocal_model_evictions", "Models evicted to make room since start.", value=serving.evictions)
        yield CounterMetricFamily(
            "drylocal_model_unparks", "Models taken back from host RAM (a copy, not a load) since start.", value=serving.unparks
        )
        if serving.inference_process_deaths is not None:
            yield CounterMetricFamily(
                "drylocal_inference_process_deaths",
                "Times the inference process died (a crash, its memory limit) and was started again.",
                value=serving.inference_process_deaths,
            )

    def describe(self) -> list[Metric]:
        return []  # series are known only at scrape time

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


@get("/metrics", operation_id="metrics", summary="Prometheus metrics", include_in_schema=False)
async def metrics(request: Request) -> Response[bytes]:
    engine = request.app.state.engine
    if not engine.settings.metrics_public:
        # Every account's job counts: the owner's to read (Prometheus sends bearer_token as this header).
        if engine.accounts.authenticate(bearer_key(request)).billed:
            raise Forbidden("The metrics need an owner's key (or the metrics_public setting).")
    collector: EngineMetrics = request.app.state.metrics
    return Response(collector.exposition(), media_type=CONTENT_TYPE_LATEST)


ROUTES = [metrics]
