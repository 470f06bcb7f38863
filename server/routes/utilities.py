"""Utilities: balance, the models list, and job status."""

from __future__ import annotations

import math
from typing import Any
from urllib.parse import urlencode

from litestar import Request, get
from litestar.di import NamedDependency
from litestar.params import FromPath

from engine import Account, Engine, Job
from engine.engine import Serving
from model_registry import ModelSpec
from server.openapi import DryOperation, ModelsOperation
from server.responses import BalanceAnswer, ModelsPage, StatusAnswer, responses_for

__all__ = ("ROUTES", "model_info", "status_body")

_DEFAULT_PER_PAGE = 15
_MAX_PER_PAGE = 50


@get("/balance", operation_id="balance", summary="Current account balance", responses=responses_for(BalanceAnswer))
async def balance(engine: NamedDependency[Engine], account: NamedDependency[Account]) -> dict:
    amount = engine.accounts.balance(account.id)
    # The clients read data.balance; the docs show a bare balance. Both are served.
    return {
        "data": {"balance": amount, "currency": "USD", "client_id": account.client_id, "tier": account.tier},
        "balance": amount,
    }


@get(
    "/models",
    operation_id="models",
    summary="Available models, paginated",
    operation_class=ModelsOperation,
    responses=responses_for(ModelsPage),
)
async def models(request: Request, engine: NamedDependency[Engine], account: NamedDependency[Account]) -> dict:
    query = request.query_params
    types = ",".join(query.getall("filter[inference_types]", [])) or query.get("filter[inference_types][]", "")
    only_available = _truthy(query.get("filter[available]"))
    specs = engine.registry.listing(types.split(",") if types else (), only_runnable=only_available)
    per_page = _positive_int(query.get("per_page") or query.get("limit"), _DEFAULT_PER_PAGE)
    per_page = min(per_page, _MAX_PER_PAGE)
    page = _positive_int(query.get("page"), 1)
    total = len(specs)
    last_page = max(1, math.ceil(total / per_page))
    rows = specs[(page - 1) * per_page : page * per_page]
    serving = engine.serving()

    def link(number: int | None) -> str | None:
        if number is None:
            return None
        params = {"page": number, "per_page": per_page}
        if types:
            params["filter[inference_types]"] = types
        if only_available:
            params["filter[available]"] = "true"
        return f"{engine.settings.base_url}/api/v1/client/models?{urlencode(params)}"

    return {
        "data": [model_info(engine, spec, serving) for spec in rows],
        "links": {
            "first": link(1),
            "last": link(last_page),
            "prev": link(page - 1 if page > 1 else None),
            "next": link(page + 1 if page < last_page else None),
        },
        "meta": {
            "current_page": page,
            "from": (page - 1) * per_page + 1 if rows else None,
            "last_page": last_page,
            "path": f"{engine.settings.base_url}/api/v1/client/models",
            "per_page": per_page,
            "to": (page - 1) * per_page + len(rows) if rows else None,
            "total": total,
        },
    }


@get(
    "/request-status/{request_id:str}",
    operation_id="request_status",
    summary="Job status and result",
    operation_class=DryOperation,
    responses=responses_for(StatusAnswer, 404),
)
async def request_status(
    request_id: FromPath[str], engine: NamedDependency[Engine], account: NamedDependency[Account]
) -> dict:
    job = await engine.ended(engine.job_for(request_id, account), engine.settings.status_hold_seconds)
    return {"data": status_body(engine, job)}


def status_body(engine: Engine, job: Job) -> dict[str, Any]:
    alt = engine.alt_result_urls(job)
    body: dict[str, Any] = {
        "status": job.public_status,
        "progress": 100.0 if job.status == "done" else float(job.progress),
        "result_url": engine.result_url(job),
        "result": job.result,
        "preview": job.preview,
        "results_alt_formats": alt or None,
    }
    if job.status == "error":
        body.update(error=job.error_message, error_code=job.error_code, error_message=job.error_message)
    return body


def model_info(engine: Engine, spec: ModelSpec, serving: Serving | None = None) -> dict[str, Any]:
    """A model as /models and MCP list it; ``serving`` is the executor's snapshot (taken once per listing)."""
    serving = serving or engine.serving()
    resident = next((m for m in serving.resident if m.slug == spec.slug), None)
    availability = engine.registry.availability(spec)
    info: dict[str, Any] = {
        "name": spec.name,
        "slug": spec.slug,
        "inference_types": list(spec.inference_types),
        "info": {"limits": spec.info.limits, "features": spec.info.features, "defaults": spec.info.defaults},
        "loras": [{"display_name": lora.display_name, "name": lora.name} for lora in spec.loras],
        # drylocal's own fields, beside the hosted ones:
        "installed": availability.installed,
        "available": availability.runnable,
        "unavailable_reason": availability.reason or None,
        "quantization": spec.quantization,
        "weights_note": spec.weights_note or None,
        "memory_estimate_bytes": spec.vram_bytes,
        "memory_bytes": serving.measured.get(spec.slug),
        "load_seconds": serving.load_seconds.get(spec.slug),
        "loaded": resident is not None,
        "aliases": list(spec.aliases),
        "license": spec.license or None,
        "placement": engine.placement(spec.slug).as_dict(),
    }
    if spec.languages:
        info["languages"] = [
            {
                "name": language.name,
                "slug": language.slug,
                "voices": [{"name": v.name, "slug": v.slug, "gender": v.gender} for v in language.voices],
            }
            for language in spec.languages
        ]
    return info


def _truthy(value: str | None) -> bool:
    return (value or "").strip().lower() in ("1", "true", "yes", "on")


def _positive_int(value: str | None, default: int) -> int:
    try:
        number = int(value) if value not in (None, "") else default
    except ValueError:
        return default
    return number if number > 0 else default


ROUTES = [balance, models, request_status]
