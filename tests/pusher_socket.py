"""A pysher client on a drylocal server, subscribed to an account's private channel, recording its updates:
what the scale-out tests watch a job through (tests/test_websockets.py drives pysher itself, reconnects included)."""

from __future__ import annotations

import json
import threading
from typing import Any

__all__ = ("APP_KEY", "Socket")

APP_KEY = "dryapi-api-prod-key"


class Socket:
    def __init__(self, server: Any, key: str, client_id: str) -> None:
        """``server``: anything with ``port`` and ``url`` (a ServerProcess, a live in-process server)."""
        import pysher

        self.updates: list[dict] = []
        subscribed = threading.Event()
        self.client = pysher.Pusher(
            APP_KEY, secure=False, custom_host="127.0.0.1", port=server.port,
            auth_endpoint=f"{server.url}/broadcasting/auth", auth_endpoint_headers={"Authorization": f"Bearer {key}"},
        )

        def on_connect(_data) -> None:
            channel = self.client.subscribe(f"private-client.{client_id}")
            channel.bind("request.status.updated", lambda data: self.updates.append(json.loads(data)))
            channel.bind("pusher_internal:subscription_succeeded", lambda _: subscribed.set())

        self.client.connection.bind("pusher:connection_established", on_connect)
        self.client.connect()
        assert subscribed.wait(20), "the socket never subscribed"

    def statuses(self, request_id: str) -> list[str]:
        return [u["status"] for u in list(self.updates) if u["request_id"] == request_id]

    def close(self) -> None:
        self.client.disconnect(timeout=5)
