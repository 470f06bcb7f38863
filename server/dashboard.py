"""The local dashboard at ``/``: one static page (no build step, no CDN) and the state it polls.

The page talks to drylocal only through what any client uses (the dryAPI routes, the Pusher socket,
the OpenAPI document) plus ``/dashboard/state``: the signed-in key's recent jobs, the loaded models
against the memory budget, and the last benchmark report, none of which the dryAPI has a route for.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from litestar import Request, Response, get
from litestar.di import NamedDependency
from litestar.static_files import create_static_files_router

from engine import Account, Engine

__all__ = ("ROUTES", "last_bench_report_path")

STATIC = Path(__file__).parent / "static"


def last_bench_report_path(engine: Engine) -> Path:
    """Where ``drylocal bench`` leaves a copy of its latest report for the dashboard."""
    return engine.settings.home / "bench" / "last-report.json"


@get("/", include_in_schema=False)
async def dashboard_page() -> Response[bytes]:
    return Response((STATIC / "dashboard.html").read_bytes(), media_type="text/html")


@get("/dashboard/state", operation_id="dashboard_state", summary="Jobs, models and memory for the dashboard")
async def dashboard_state(request: Request, engine: NamedDependency[Engine], account: NamedDependency[Account]) -> dict:
    from server.routes.utilities import status_body

    worker = engine.worker
    jobs = []
    for job in engine.jobs.recent(account.id):
        jobs.append({
            "request_id": job.id, "task": job.task, "model": job.model, "created_at": job.created_at,
            **status_body(engine, job),
        })
    models = [
        {"slug": m.slug, "memory_bytes": m.memory_bytes, "busy": m.leases > 0, "idle_seconds": round(m.idle_seconds, 1),
         "load_seconds": round(m.load_seconds, 3)}
        for m in worker.resident()
    ]
    report_path = last_bench_report_path(engine)
    report: Any = None
    if report_path.is_file():
        try:
            report = json.loads(report_path.read_text())
        except ValueError:
            report = None
    return {
        "account": {"client_id": account.client_id, "tier": account.tier, "balance": engine.accounts.balance(account.id)},
        "app_key": request.app.state.pusher.keys[0],
        "queue_depth": worker.queue_depth,
        "jobs": jobs,
        "memory": {
            "device": worker.budget.device,
            "budget_bytes": worker.budget.budget_bytes,
            "in_use_bytes": sum(m["memory_bytes"] for m in models),
        },
        "models": models,
        "bench_report": report,
    }


ROUTES = [dashboard_page, dashboard_state, create_static_files_router(path="/dashboard-assets", directories=[STATIC], include_in_schema=False)]
