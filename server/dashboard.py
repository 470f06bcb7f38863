"""The local dashboard at ``/``: one static page (no build step, no CDN) and the state it polls.

The page talks to drylocal only through what any client uses (the dryAPI routes, the Pusher socket,
the OpenAPI document) plus ``/dashboard/state``: the signed-in key's recent jobs, the loaded models
against the memory budget, and the last benchmark report, none of which the dryAPI has a route for.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from litestar import Request, Response, Router, get
from litestar.di import NamedDependency
from litestar.static_files import create_static_files_router
from litestar.types import ASGIApp, Message, Receive, Scope, Send

from engine import Account, Engine

__all__ = ("CONTENT_SECURITY_POLICY", "ROUTES", "last_bench_report_path")

STATIC = Path(__file__).parent / "static"

# The page renders every value as text; this policy is the second wall should that ever slip. Scripts
# and styles come only from our own files (no inline code, no eval), pictures from us or data: URLs (the
# job previews), fetches and the Pusher socket only from this origin ('self' covers ws:/wss: to the same
# host), and no other page may frame it (clickjacking the key form).
CONTENT_SECURITY_POLICY = "; ".join((
    "default-src 'none'",
    "script-src 'self'",
    "style-src 'self'",
    "img-src 'self' data:",
    "connect-src 'self'",
    "base-uri 'none'",
    "form-action 'none'",
    "frame-ancestors 'none'",
))
_SECURITY_HEADERS = [
    (b"content-security-policy", CONTENT_SECURITY_POLICY.encode()),
    (b"x-frame-options", b"DENY"),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
]


def _with_security_headers(app: ASGIApp) -> ASGIApp:
    """Adds the headers above to every response of the dashboard's routes. A middleware rather than
    ``response_headers``, which the static files (sent as ASGI responses) would not get. Only these routes:
    the API's Swagger and ReDoc pages under /schema load their scripts from a CDN, and result files are
    opened and embedded by other pages."""

    async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", ()), *_SECURITY_HEADERS]
            await send(message)

        await app(scope, receive, send_with_headers)

    return middleware


def last_bench_report_path(engine: Engine) -> Path:
    """Where ``drylocal bench`` leaves a copy of its latest report for the dashboard."""
    return engine.settings.home / "bench" / "last-report.json"


@get("/", include_in_schema=False)
async def dashboard_page() -> Response[bytes]:
    return Response((STATIC / "dashboard.html").read_bytes(), media_type="text/html")


@get("/dashboard/state", operation_id="dashboard_state", summary="Jobs, models and memory for the dashboard")
async def dashboard_state(request: Request, engine: NamedDependency[Engine], account: NamedDependency[Account]) -> dict:
    from server.routes.utilities import status_body

    serving = engine.serving()
    jobs = []
    for job in engine.recent_jobs(account.id):
        jobs.append({
            "request_id": job.id, "task": job.task, "model": job.model, "created_at": job.created_at,
            **status_body(engine, job),
        })
    models = [
        {"slug": m.slug, "memory_bytes": m.memory_bytes, "busy": m.leases > 0, "idle_seconds": round(m.idle_seconds, 1),
         "load_seconds": round(m.load_seconds, 3)}
        for m in serving.resident
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
        "queue_depth": serving.queue_depth,
        "jobs": jobs,
        "memory": {
            "device": serving.device,
            "budget_bytes": serving.budget_bytes,
            "in_use_bytes": sum(m["memory_bytes"] for m in models),
            # A crash or a memory-limit stop the API survived: the owner sees it here, not only in the log.
            "inference_process_deaths": serving.inference_process_deaths,
        },
        "models": models,
        "bench_report": report,
    }


ROUTES = [
    Router(
        "/",
        route_handlers=[
            dashboard_page,
            dashboard_state,
            create_static_files_router(path="/dashboard-assets", directories=[STATIC], include_in_schema=False),
        ],
        middleware=[_with_security_headers],
    )
]
