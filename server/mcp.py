"""The dryAPI MCP server at ``/mcp`` (streamable HTTP, the official ``mcp`` SDK), Bearer-key auth.

Each tool of mcp-server.md is a task module's ``mcp`` declaration: its parameters are the task's form
fields (files as base64 or data URIs, as the dryAPI MCP clients send them), its call is the same
validation and job as the HTTP route, and it waits for the result with the documented adaptive polling.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import functools
import inspect
import json
from typing import Any, Callable

from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError

from engine import Engine
from engine.errors import DryError, InvalidRequest, RateLimited
from engine.redaction import redact_paths
from engine.tasks import TASKS, Task, validate
from server.auth import admit
from server.body import FormFile, RequestBody
from server.routes.utilities import model_info, status_body

__all__ = ("TOOLS", "build_mcp_server")

TOOLS: dict[str, Task] = {task.mcp.name: task for task in TASKS.values() if task.mcp}
"""Tool name -> the task it runs."""
_TYPES = {"string": str, "url": str, "integer": int, "number": float, "boolean": bool, "text_or_list": str | list[str],
          "loras": str | list[dict[str, Any]], "file": str, "files": list[str]}


def _decode_file(name: str, value: str) -> FormFile:
    """A base64 string or a data URI (``data:image/png;base64,...``) as an upload."""
    content_type = "application/octet-stream"
    if value.startswith("data:"):
        header, _, value = value.partition(",")
        content_type = header[5:].split(";", 1)[0] or content_type
    try:
        data = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidRequest.on(name, f"The {name} must be base64 or a data URI.") from None
    extension = content_type.rsplit("/", 1)[-1].replace("jpeg", "jpg").replace("mpeg", "mp3")
    return FormFile(f"{name}.{extension}" if "/" in content_type else name, content_type, data)


def _body(task: Task, arguments: dict[str, Any]) -> RequestBody:
    body = RequestBody()
    if arguments.get("model"):
        body.fields["model"] = arguments["model"]
    for field in task.fields:
        value = arguments.get(field.name)
        if value is None:
            continue
        if field.kind == "file":
            body.files[field.name] = [_decode_file(field.name, value)]
        elif field.kind == "files":
            body.files[field.name] = [_decode_file(field.name, item) for item in value]
        else:
            body.fields[field.name] = value
    return body


def _signature(task: Task, extra: tuple[inspect.Parameter, ...] = ()) -> inspect.Signature:
    parameters = [inspect.Parameter("model", inspect.Parameter.KEYWORD_ONLY, annotation=str | None, default=None)]
    for field in task.fields:
        if field.name == "webhook_url":
            continue
        kind = _TYPES.get(field.kind, str)
        parameters.append(inspect.Parameter(field.name, inspect.Parameter.KEYWORD_ONLY, annotation=kind | None, default=None))
    return inspect.Signature([*parameters, *extra])


def build_mcp_server(engine_of: Callable[[], Engine]):
    server = MCPServer("drylocal", instructions="dryAPI on your own GPU: every task as a tool, results as URLs or text.")
    context_parameter = inspect.Parameter("ctx", inspect.Parameter.KEYWORD_ONLY, annotation=Context, default=None)

    def dry_errors(function):
        """dryAPI's errors (401, 422, ...) reach the client as tool errors with their message."""

        @functools.wraps(function)
        async def wrapped(*args, **kwargs):
            try:
                return await function(*args, **kwargs)
            except RateLimited as exc:
                raise ToolError(f"{exc.message} Retry after {exc.retry_after} s ({exc.limit_type} limit).") from None
            except DryError as exc:
                details = "; ".join(f"{k}: {' '.join(v)}" for k, v in getattr(exc, "errors", {}).items())
                text = f"{exc.message} ({details})" if details else exc.message
                raise ToolError(redact_paths(text, engine_of().settings.home)) from None

        return wrapped

    def account_of(ctx, route: str | None = None) -> Any:
        """The caller's account, counted against the same rate limits as the REST route ``route``."""
        request = ctx.request_context.request if ctx is not None else None
        header = request.headers.get("authorization", "") if request is not None else ""
        key = header[7:].strip() if header.lower().startswith("bearer ") else None
        return admit(engine_of(), key, route)

    @dry_errors
    async def run_task(task: Task, arguments: dict[str, Any], ctx) -> str:
        engine = engine_of()
        account = account_of(ctx, task.name)
        body = _body(task, arguments)
        checked = await asyncio.to_thread(validate, task, body.fields, body.files, engine, for_price=False)
        job = await engine.submit(account, task.name, checked.spec, checked.params, checked.uploads, return_inline=True)
        delay, longest, timeout = task.mcp.polling
        started = asyncio.get_running_loop().time()
        # The documented adaptive polling: a first look after the initial delay, then 1.5x longer waits.
        while not (current := engine.job(job.id)).finished:
            if asyncio.get_running_loop().time() - started > timeout:
                break
            await asyncio.sleep(delay)
            delay = min(longest, delay * 1.5)
        return json.dumps({"request_id": job.id, **status_body(engine, current)})

    @dry_errors
    async def price_task(task: Task, arguments: dict[str, Any], ctx) -> str:
        account_of(ctx, f"{task.name}/price-calculation")
        engine = engine_of()
        body = _body(task, arguments)
        checked = await asyncio.to_thread(validate, task, body.fields, body.files, engine, for_price=True)
        return json.dumps({"price": engine.quote(checked.spec, checked.params)})

    for name, task in TOOLS.items():
        label = task.label

        def make(task=task):
            async def tool(ctx=None, **arguments) -> str:
                return await run_task(task, arguments, ctx)

            async def price(ctx=None, **arguments) -> str:
                return await price_task(task, arguments, ctx)

            return tool, price

        tool, price = make()
        for function in (tool, price):
            # The SDK reads both: the signature for the input schema, the annotations to find ctx.
            function.__signature__ = _signature(task, (context_parameter,))
            function.__annotations__ = {p.name: p.annotation for p in function.__signature__.parameters.values()} | {"return": str}
        server.tool(name=name, description=f"{label}: submits the job and waits for its result URL or text.")(tool)
        server.tool(name=f"{name}_price", description=f"Price of a {label} job in USD.")(price)

    @server.tool(description="List the models and their limits, features, defaults, LoRAs and voices.")
    @dry_errors
    async def get_available_models(inference_type: str | None = None, ctx: Context = None) -> str:
        account_of(ctx)
        engine = engine_of()
        specs = engine.registry.listing([inference_type] if inference_type else ())
        serving = engine.serving()
        return json.dumps([model_info(engine, spec, serving) for spec in specs])

    @server.tool(description="The account's balance in USD.")
    @dry_errors
    async def get_balance(ctx: Context = None) -> str:
        account = account_of(ctx)
        return json.dumps({"balance": engine_of().accounts.balance(account.id), "currency": "USD"})

    @server.tool(description="Status, progress and result of a job by its request id.")
    @dry_errors
    async def check_job_status(request_id: str, ctx: Context = None) -> str:
        account = account_of(ctx, f"request-status/{request_id}")
        engine = engine_of()
        try:
            return json.dumps({"request_id": request_id, **status_body(engine, engine.job_for(request_id, account))})
        except DryError as exc:
            return json.dumps({"error": exc.message})

    return server
