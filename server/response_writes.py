"""A response's head and body leave in one socket write.

uvicorn writes the status line and headers the moment the app sends ``http.response.start``, then the body
in a second write. With TCP_NODELAY those are two segments, and the client is woken twice per response: on
two cores under the submit load that first write was a fifth of the API thread's time, most of it the
thread giving its core to the woken client. Here the head is held until the body's first write, which in
an ASGI app follows in the same step of the event loop; a flush scheduled for the end of that step sends a
head whose body does not follow at once (an empty body, a stream whose first chunk is still being made),
so no response waits on its head.
"""

from __future__ import annotations

import asyncio
from typing import Any

__all__ = ("one_write_per_response",)


class _HeadHeldUntilBody:
    """The transport as one request's response cycle sees it: writes the head together with what follows."""

    __slots__ = ("_transport", "_cycle", "_loop", "_head", "_head_seen")

    def __init__(self, transport: asyncio.Transport, cycle: Any, loop: asyncio.AbstractEventLoop) -> None:
        self._transport, self._cycle, self._loop = transport, cycle, loop
        self._head: bytes | None = None
        self._head_seen = False

    def write(self, data: bytes) -> None:
        if self._head is not None:
            data, self._head = self._head + data, None
        elif not self._head_seen and self._cycle.response_started:
            # The cycle's first write once the response has started is its head (a "100 Continue" comes
            # before the start, and passes).
            self._head_seen = True
            self._head = data
            self._loop.call_soon(self.flush)
            return
        self._transport.write(data)

    def flush(self) -> None:
        head, self._head = self._head, None
        if head is not None and not self._transport.is_closing():
            self._transport.write(head)

    def close(self) -> None:
        self.flush()
        self._transport.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


def one_write_per_response(base: type[asyncio.Protocol]) -> type[asyncio.Protocol]:
    """uvicorn's HTTP protocol class ``base`` with each response cycle writing through ``_HeadHeldUntilBody``."""

    if not hasattr(base, "on_headers_complete"):  # h11's protocol: writes as it always did
        return base

    class OneWritePerResponse(base):  # type: ignore[misc, valid-type]
        def on_headers_complete(self) -> None:
            before = self.cycle
            super().on_headers_complete()
            cycle = self.cycle
            if cycle is not None and cycle is not before and hasattr(cycle, "transport"):
                cycle.transport = _HeadHeldUntilBody(self.transport, cycle, self.loop)

        def shutdown(self) -> None:
            # uvicorn closes the socket itself when the cycle is complete, and a response that completed in
            # this step may still hold its head (a HEAD's, which has no body write) for the step's end: out first.
            transport = getattr(self.cycle, "transport", None)
            if isinstance(transport, _HeadHeldUntilBody):
                transport.flush()
            super().shutdown()

    return OneWritePerResponse
