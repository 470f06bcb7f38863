"""uvicorn's HTTP protocol as drylocal serves it, for ``drylocal serve`` and the in-process test server alike."""

from __future__ import annotations

import asyncio
from typing import Any

from server.response_writes import one_write_per_response
from server.slow_clients import slow_client_guard

__all__ = ("http_protocol",)


def http_protocol(settings: Any) -> type[asyncio.Protocol]:
    """Slow senders cut off (``settings``' deadlines), and each response's head and body in one write."""
    return one_write_per_response(slow_client_guard(settings.header_timeout_seconds, settings.body_idle_seconds))
