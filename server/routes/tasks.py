"""The two routes every task has: submit a job, and ``/price-calculation`` with the same fields."""

from __future__ import annotations

import asyncio

from litestar import Request, post
from litestar.handlers import HTTPRouteHandler

from litestar.di import NamedDependency
from litestar.params import FromPath, FromQuery
from engine import Account, Engine
from server.body import read_body
from server.forms import FORMS
from server.openapi import operation_for
from server.responses import PriceAnswer, SubmitAnswer, responses_for
from server.validation import validate_task

__all__ = ("task_routes",)


def task_routes(task: str) -> list[HTTPRouteHandler]:
    form = FORMS[task]

    @post(
        f"/{task}",
        status_code=200,
        operation_id=f"submit_{task}",
        summary=f"Submit a {form.label} job",
        operation_class=operation_for(form, for_price=False),
        responses=responses_for(SubmitAnswer, 400, 422),
    )
    async def submit(request: Request, engine: NamedDependency[Engine], account: NamedDependency[Account]) -> dict:
        body = await read_body(request)
        # Validation may read media or ask a video site about a URL: off the event loop.
        checked = await asyncio.to_thread(validate_task, form, body, engine, for_price=False)
        job = await engine.submit(
            account,
            task,
            checked.spec,
            checked.params,
            checked.uploads,
            webhook_url=checked.webhook_url or account.webhook_url,
            return_inline=checked.return_inline,
        )
        return {"data": {"request_id": job.id}}

    @post(
        f"/{task}/price-calculation",
        status_code=200,
        operation_id=f"price_{task}",
        summary=f"Calculate the price of a {form.label} job",
        operation_class=operation_for(form, for_price=True),
        responses=responses_for(PriceAnswer, 400, 422),
    )
    async def price(request: Request, engine: NamedDependency[Engine], account: NamedDependency[Account]) -> dict:
        body = await read_body(request)
        checked = await asyncio.to_thread(validate_task, form, body, engine, for_price=True)
        return {"data": {"price": engine.quote(checked.spec, checked.params)}}

    return [submit, price]
