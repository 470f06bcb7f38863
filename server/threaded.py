"""drylocal served by uvicorn on a thread of this process, on a free 127.0.0.1 port: for the in-process
benchmark and for tests whose clients need a real socket."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from typing import Any, Iterator

__all__ = ("free_port", "serving_in_thread")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextlib.contextmanager
def serving_in_thread(app: Any, port: int, timeout: float = 120.0, **config: Any) -> Iterator[None]:
    """Serves ``app`` until the block ends; ``config`` reaches uvicorn.Config."""
    import uvicorn

    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", **config))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.time() + timeout
    while not server.started and thread.is_alive() and time.time() < deadline:
        time.sleep(0.05)
    if not server.started:
        raise RuntimeError("drylocal did not start serving")
    try:
        yield
    finally:
        server.should_exit = True
        thread.join(30)
