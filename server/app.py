"""The Litestar app: dryAPI's routes under /api/v1/client, signed results, and the engine's lifespan."""

from __future__ import annotations

import contextlib
from typing import Any, AsyncIterator

from litestar import Litestar, Router, get
from litestar.datastructures import State
from litestar.di import Provide
from litestar.openapi import OpenAPIConfig

from engine import Engine, Settings
from server.auth import provide_account, provide_engine
from server.errors import exception_handlers
from server.routes import analysis, generation, openai, prompts, results, transformation, utilities

__all__ = ("create_app",)

# The largest documented upload is 80 MB (video and audio for transcription); leave room for the form.
_MAX_BODY_BYTES = 96 * 1024 * 1024


@get("/health", operation_id="health", summary="Liveness", include_in_schema=False)
async def health() -> dict:
    return {"status": "ok"}


def create_app(settings: Settings, **engine_options: Any) -> Litestar:
    """Build the app; ``engine_options`` reach Engine.open (tests inject budgets and loaders)."""

    @contextlib.asynccontextmanager
    async def open_engine(app: Litestar) -> AsyncIterator[None]:
        async with Engine.open(settings, **engine_options) as engine:
            app.state.engine = engine
            yield

    client = Router(
        "/api/v1/client",
        route_handlers=[
            *generation.ROUTES,
            *analysis.ROUTES,
            *transformation.ROUTES,
            *prompts.ROUTES,
            *utilities.ROUTES,
        ],
        dependencies={"account": Provide(provide_account, sync_to_thread=False)},
    )
    return Litestar(
        route_handlers=[client, openai.ROUTER, *results.ROUTES, health],
        dependencies={"engine": Provide(provide_engine, sync_to_thread=False)},
        lifespan=[open_engine],
        exception_handlers=exception_handlers,
        request_max_body_size=_MAX_BODY_BYTES,
        openapi_config=OpenAPIConfig(title="drylocal (dryAPI v1)", version="0.1.0", path="/schema"),
        state=State({"settings": settings}),
    )
