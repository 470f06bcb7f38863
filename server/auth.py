"""Bearer-key authentication, as a Litestar dependency every client route declares."""

from __future__ import annotations

from litestar import Request

from engine import Account, Engine
from engine.rate_limits import bucket_for

__all__ = ("admit", "bearer_key", "provide_account", "provide_engine")


def bearer_key(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


def provide_engine(request: Request) -> Engine:
    return request.app.state.engine


_CLIENT_PREFIX = "/api/v1/client/"
_UNLIMITED_ROUTES = ("balance", "models")


def admit(engine: Engine, key: str | None, route: str | None) -> Account:
    """The key's account, once one request of the dryAPI client ``route`` (``txt2img``,
    ``txt2img/price-calculation``, ``request-status/ID``; None: not limited) is counted against its
    limits. The one gate in front of every entry point: the REST routes, the OpenAI routes, MCP tools."""
    account = engine.accounts.authenticate(key)
    unlimited = route is None or route.strip("/") in _UNLIMITED_ROUTES
    engine.count_request(account, None if unlimited else bucket_for(route, account.tier))
    return account


def provide_account(request: Request, engine: Engine) -> Account:
    """The key's account, once its request is counted against the key's rate limits.

    It takes the engine as a dependency so Litestar resolves the two one after the other: independent
    dependencies are resolved concurrently in a task group, which cost a tenth of a submit's time."""
    path = request.url.path
    if path.startswith(_CLIENT_PREFIX):
        route = path[len(_CLIENT_PREFIX) :]
    else:
        from server.routes.openai import TASK_OF_ROUTE  # the OpenAI routes count as the task they run

        route = TASK_OF_ROUTE.get(path.rstrip("/"))
    return admit(engine, bearer_key(request), route)
