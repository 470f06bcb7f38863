"""Bearer-key authentication, as a Litestar dependency every client route declares."""

from __future__ import annotations

from litestar import Request

from engine import Account, Engine

__all__ = ("bearer_key", "provide_account", "provide_engine")


def bearer_key(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


def provide_engine(request: Request) -> Engine:
    return request.app.state.engine


def provide_account(request: Request) -> Account:
    engine: Engine = request.app.state.engine
    return engine.accounts.authenticate(bearer_key(request))
