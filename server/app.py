"""The Litestar app: dryAPI's routes under /api/v1/client, signed results, and the engine's lifespan."""

from __future__ import annotations

import contextlib
import gc
from typing import Any, AsyncIterator

from litestar import Litestar, Router, WebSocket, asgi, get, websocket
from litestar.datastructures import State
from litestar.types import Receive, Scope, Send
from litestar.di import Provide
from litestar.openapi import OpenAPIConfig
from litestar.params import FromPath

from engine import Engine, Settings
from engine.errors import DryError
from server.auth import provide_account, provide_engine
from server.errors import envelope, exception_handlers
from server.mcp import build_mcp_server
from server.realtime import PusherHub
from server import dashboard, metrics
from server.host_guard import host_guard
from server.routes import broadcasting, openai, prompts, results, tasks, utilities

__all__ = ("create_app",)

# The largest documented upload is 80 MB (video and audio for transcription); leave room for the form.
_MAX_BODY_BYTES = 96 * 1024 * 1024


@get("/health", operation_id="health", summary="Liveness", include_in_schema=False)
async def health() -> dict:
    return {"status": "ok"}


def create_app(settings: Settings, *, freeze_heap: bool = False, **engine_options: Any) -> Litestar:
    """Build the app; ``engine_options`` reach Engine.open (tests inject budgets and loaders).

    ``freeze_heap`` (``drylocal serve``): once the engine is up, what start-up made moves out of the garbage
    collector's sight. The server holds about 290,000 objects by then, and a full collection walking them all
    stopped the event loop for 140 ms every so often under load; requests then wait only for the young
    generations. (Not for tests, which open many engines in one process: frozen cycles are never freed.)"""

    holder: dict[str, Engine] = {}
    mcp_server = build_mcp_server(lambda: holder["engine"])
    mcp_app = mcp_server.streamable_http_app(streamable_http_path="/", stateless_http=True, json_response=True)

    @asgi("/mcp", is_mount=True)
    async def mcp(scope: Scope, receive: Receive, send: Send) -> None:
        # No key, no session: not even the tool list (each tool also counts the key's rate limits).
        header = next((v.decode("latin-1") for k, v in scope["headers"] if k == b"authorization"), "")
        scheme, _, key = header.partition(" ")
        try:
            holder["engine"].accounts.authenticate(key.strip() if scheme.lower() == "bearer" else None)
        except DryError as exc:
            await _asgi_json(send, exc.status, envelope(exc.status, exc.message, None, settings.error_format))
            return
        await mcp_app(scope, receive, send)

    @contextlib.asynccontextmanager
    async def open_engine(app: Litestar) -> AsyncIterator[None]:
        async with Engine.open(settings, **engine_options) as engine, mcp_server.session_manager.run():
            app.state.engine = holder["engine"] = engine
            app.state.pusher = hub = PusherHub(engine)
            app.state.metrics = collector = metrics.EngineMetrics(engine)
            unsubscribe = [engine.subscribe(hub.on_event), engine.subscribe(collector.on_event)]
            if freeze_heap:
                gc.collect()
                gc.freeze()
            try:
                yield
            finally:
                for stop in unsubscribe:
                    stop()
                hub.close_all()

    @websocket("/app/{key:str}")
    async def pusher_socket(socket: WebSocket, key: FromPath[str]) -> None:
        await socket.app.state.pusher.serve(socket, key)

    client = Router(
        "/api/v1/client",
        route_handlers=[
            *tasks.ROUTES,
            *prompts.ROUTES,
            *utilities.ROUTES,
        ],
        dependencies={"account": Provide(provide_account, sync_to_thread=False)},
    )
    # Key-authenticated routes outside the dryAPI prefix.
    keyed_routes = [
        Router(
            "/",
            route_handlers=[*broadcasting.ROUTES, *dashboard.ROUTES],
            dependencies={"account": Provide(provide_account, sync_to_thread=False)},
        )
    ]
    return Litestar(
        route_handlers=[client, openai.ROUTER, mcp, pusher_socket, *keyed_routes, *metrics.ROUTES, *results.ROUTES, health],
        dependencies={"engine": Provide(provide_engine, sync_to_thread=False)},
        lifespan=[open_engine],
        middleware=[host_guard(settings)],
        exception_handlers=exception_handlers,
        request_max_body_size=_MAX_BODY_BYTES,
        openapi_config=OpenAPIConfig(title="drylocal (dryAPI v1)", version="0.1.0", path="/schema"),
        state=State({"settings": settings}),
    )


async def _asgi_json(send: Send, status: int, body: dict) -> None:
    import json

    await send({"type": "http.response.start", "status": status, "headers": [(b"content-type", b"application/json")]})
    await send({"type": "http.response.body", "body": json.dumps(body).encode()})
