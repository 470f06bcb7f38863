"""Connections that send a request too slowly are closed, so a few clients cannot hold every socket.

uvicorn has no header or body read timeout: a client that sends one header byte every few seconds (each
byte cancels its keep-alive timer) or stops halfway through a body keeps its connection, and its slot
under ``max_connections``, for as long as it likes. Here a request's headers must arrive whole within
``header_timeout_seconds`` of the connection (or of the previous response), and a body that is being
sent must not pause longer than ``body_idle_seconds``; otherwise the connection is closed.
"""

from __future__ import annotations

import asyncio
from typing import Any

__all__ = ("slow_client_guard",)


def slow_client_guard(header_timeout_seconds: float, body_idle_seconds: float) -> type[asyncio.Protocol]:
    """uvicorn's HTTP protocol (httptools where installed, as uvicorn picks it) with the two deadlines."""
    try:
        from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol as Base
    except ImportError:  # uvicorn without httptools parses with h11
        from uvicorn.protocols.http.h11_impl import H11Protocol as Base

    class GuardedProtocol(Base):  # type: ignore[misc, valid-type]
        _deadline: asyncio.TimerHandle | None = None

        def connection_made(self, transport: Any) -> None:
            super().connection_made(transport)
            self._await_headers()

        def data_received(self, data: bytes) -> None:
            super().data_received(data)
            if self.transport.get_protocol() is not self:  # upgraded to a WebSocket: not ours to time
                self._disarm()
            elif self._reading_body():
                self._arm(body_idle_seconds, "body")
            elif self._between_requests():
                pass  # the headers' deadline set when the last response ended keeps running
            else:
                self._disarm()  # the app has the request and is answering it

        def on_response_complete(self) -> None:
            super().on_response_complete()
            self._await_headers()

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm()
            super().connection_lost(exc)

        def _reading_body(self) -> bool:
            cycle = self.cycle
            return cycle is not None and not cycle.response_complete and cycle.more_body

        def _between_requests(self) -> bool:
            return self.cycle is None or self.cycle.response_complete

        def _await_headers(self) -> None:
            self._arm(header_timeout_seconds, "headers")

        def _arm(self, seconds: float, what: str) -> None:
            self._disarm()
            if seconds > 0:
                self._deadline = self.loop.call_later(seconds, self._too_slow, what)

        def _disarm(self) -> None:
            if self._deadline is not None:
                self._deadline.cancel()
                self._deadline = None

        def _too_slow(self, what: str) -> None:
            self._deadline = None
            if what == "headers" and not self._between_requests():
                return  # the request arrived just now
            self.logger.info("closing a connection that sent its request %s too slowly", what)
            self.transport.close()

    return GuardedProtocol
