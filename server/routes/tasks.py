"""The two routes every task has: submit a job, and ``/price-calculation`` with the same fields; made for
each task module (engine/tasks), whose form, checks and pipeline they reach in one hop."""

from __future__ import annotations

import asyncio

from litestar import Request, post
from litestar.di import NamedDependency
from litestar.handlers import HTTPRouteHandler

from engine import Account, Engine
from engine.tasks import TASKS, Task, Validated, validate
from server.body import RequestBody, read_body
from server.openapi import operation_for
from server.responses import PriceAnswer, SubmitAnswer, responses_for

__all__ = ("ROUTES", "task_routes")


def task_routes(task: Task) -> list[HTTPRouteHandler]:
    operation = task.name.replace("/", "_")  # videos/replace

    @post(
        f"/{task.name}",
        status_code=200,
        operation_id=f"submit_{operation}",
        summary=f"Submit a {task.label} job",
        tags=[task.group],
        operation_class=operation_for(task, for_price=False),
        responses=responses_for(SubmitAnswer, 400, 422),
    )
    async def submit(request: Request, engine: NamedDependency[Engine], account: NamedDependency[Account]) -> dict:
        body = await read_body(request)
        checked = await _validated(task, body, engine, for_price=False)
        job = await engine.submit(
            account,
            task.name,
            checked.spec,
            checked.params,
            checked.uploads,
            webhook_url=checked.webhook_url or account.webhook_url,
            return_inline=checked.return_inline,
        )
        return {"data": {"request_id": job.id}}

    @post(
        f"/{task.name}/{task.price_route}",
        status_code=200,
        operation_id=f"price_{operation}",
        summary=f"Calculate the price of a {task.label} job",
        tags=[task.group],
        operation_class=operation_for(task, for_price=True),
        responses=responses_for(PriceAnswer, 400, 422),
    )
    async def price(request: Request, engine: NamedDependency[Engine], account: NamedDependency[Account]) -> dict:
        body = await read_body(request)
        checked = await _validated(task, body, engine, for_price=True)
        return {"data": {"price": engine.quote(checked.spec, checked.params)}}

    return [submit, price]


async def _validated(task: Task, body: RequestBody, engine: Engine, *, for_price: bool) -> Validated:
    if task.checks_quickly(body.fields, body.files, body.size):
        return validate(task, body.fields, body.files, engine, for_price=for_price)
    # Validation may read media or ask a video site about a URL: off the event loop.
    return await asyncio.to_thread(validate, task, body.fields, body.files, engine, for_price=for_price)


ROUTES = [handler for task in TASKS.values() if task.routes for handler in task_routes(task)]
