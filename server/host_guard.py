"""Refuse requests whose ``Host`` names a host this server does not answer to (DNS rebinding).

A web page on attacker.example can make the browser resolve its own name to 127.0.0.1 and then read
a local server's answers as same-origin. Such a request still says ``Host: attacker.example``. IP
literals are always accepted (a browser that was given an address is not being rebound), as are
``localhost`` names, the configured host, the public URL's host and the ``allowed_hosts`` setting.
"""

from __future__ import annotations

import functools
import ipaddress
from urllib.parse import urlsplit

from litestar.types import ASGIApp, Receive, Scope, Send

from engine.settings import Settings
from server.errors import envelope

__all__ = ("host_guard",)


def _hostname(value: str) -> str:
    value = value.strip().lower()
    if value.startswith("["):  # [::1]:8000
        return value[1 : value.find("]")] if "]" in value else value
    return value.rsplit(":", 1)[0] if value.count(":") == 1 else value


def _is_ip(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


def allowed_names(settings: Settings) -> frozenset[str]:
    names = {"localhost", settings.host.lower(), *(h.lower() for h in settings.allowed_hosts)}
    if settings.public_url:
        names.add((urlsplit(settings.public_url).hostname or "").lower())
    return frozenset(names - {""})


def host_is_allowed(host_header: str | None, names: frozenset[str]) -> bool:
    if not host_header:
        return True  # HTTP/1.0 clients and some tools send none; a browser always does
    name = _hostname(host_header).rstrip(".")
    return _is_ip(name) or name in names or name.endswith(".localhost") or "*" in names


def host_guard(settings: Settings):
    names = allowed_names(settings)
    # A server hears a handful of distinct Host headers; parsing each one on every request was 2 % of a
    # submit. Bounded, as the header is the client's to choose.
    allowed = functools.lru_cache(maxsize=256)(lambda host: host_is_allowed(host, names))

    def middleware(app: ASGIApp) -> ASGIApp:
        async def guarded(scope: Scope, receive: Receive, send: Send) -> None:
            if scope["type"] in ("http", "websocket"):
                host = next((v.decode("latin-1") for k, v in scope["headers"] if k == b"host"), None)
                if not allowed(host):
                    await _refuse(scope, send, host or "")
                    return
            await app(scope, receive, send)

        return guarded

    return middleware


async def _refuse(scope: Scope, send: Send, host: str) -> None:
    if scope["type"] == "websocket":
        await send({"type": "websocket.close", "code": 1008})
        return
    import json

    message = f"This server does not answer to the host {host!r}; add it to the allowed_hosts setting."
    body = json.dumps(envelope(421, message, None, "object")).encode()
    await send({"type": "http.response.start", "status": 421, "headers": [(b"content-type", b"application/json")]})
    await send({"type": "http.response.body", "body": body})
