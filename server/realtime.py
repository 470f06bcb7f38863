"""Job updates pushed over WebSockets: drylocal is its own Pusher-protocol server at ``/app/{key}``.

Each account has one private channel, ``private-client.{client_id}``; every status change the engine
publishes (``processing``, each ``in_progress`` step with its preview, ``done``) becomes a
``request.status.updated`` event on it. Failures go by webhook only, as the docs say.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

from litestar import WebSocket
from litestar.exceptions import WebSocketDisconnect

from engine import Engine
from engine.events import JobEvent
from server import pusher_protocol as pusher
from server.pusher_protocol import Close

__all__ = ("PusherHub", "client_channel")

_PUSHED_STATUSES = ("processing", "in_progress", "done")
# A client that lets this many frames pile up is told to come back later (4100) rather than
# holding the engine's progress events in memory.
_BACKLOG = 256
_MAX_GRANTS = 10_000
_REVOCATION_CHECK_SECONDS = 5.0
"""How long a revoked key's idle socket may stay open; an event is never sent to one."""


def client_channel(client_id: str) -> str:
    return f"private-client.{client_id}"


class _Connection:
    def __init__(self, socket: WebSocket) -> None:
        self.socket = socket
        self.socket_id = pusher.new_socket_id()
        self.channels: set[str] = set()
        self.keys: dict[str, str] = {}
        """channel -> digest of the API key that authorized it: a revoked key ends the socket."""
        self.outbox: asyncio.Queue[str | tuple[int, str]] = asyncio.Queue(maxsize=_BACKLOG)
        self.last_heard = time.monotonic()

    def send(self, frame: str) -> None:
        try:
            self.outbox.put_nowait(frame)
        except asyncio.QueueFull:
            self.close(Close.OVER_CAPACITY, "Too many undelivered messages")

    def close(self, code: int, reason: str) -> None:
        """Ends the socket after what is already queued; a full queue drops its backlog first."""
        while self.outbox.full():
            self.outbox.get_nowait()
        self.outbox.put_nowait((code, reason))


class PusherHub:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        settings = engine.settings
        self.keys: tuple[str, ...] = tuple(settings.pusher_app_keys)
        self.activity_timeout = settings.pusher_activity_timeout
        self.pong_timeout = settings.pusher_pong_timeout
        self.secret = engine.secret("pusher_secret")
        self._connections: set[_Connection] = set()
        self._subscribers: dict[str, set[_Connection]] = {}
        self._channel_of_account: dict[str, str] = {}
        self._grants: dict[tuple[str, str], str] = {}
        self.max_sockets_per_ip = settings.pusher_max_sockets_per_ip
        self._sockets_of_ip: dict[str, int] = {}
        """(socket id, channel) -> the authorizing key's digest, until the socket subscribes."""

    # ------------------------------------------------------------ authorization
    def authorize(self, client_id: str, socket_id: str, channel: str, key_digest: str = "") -> str | None:
        """The ``auth`` token for a socket joining ``channel``, or None when the account may not."""
        if channel != client_channel(client_id):
            return None
        if len(self._grants) >= _MAX_GRANTS:  # tokens never used: the oldest go first
            del self._grants[next(iter(self._grants))]
        self._grants[(socket_id, channel)] = key_digest
        return pusher.auth_token(self.keys[0], self.secret, socket_id, channel)

    def _close_revoked(self, connections) -> set[_Connection]:
        """Close the sockets whose channels a since-revoked key authorized; returns them."""
        connections = [c for c in connections if c.keys]
        revoked = self.engine.accounts.revoked(d for c in connections for d in c.keys.values())
        closed = {c for c in connections if revoked.intersection(c.keys.values())}
        for connection in closed:
            connection.keys.clear()
            connection.close(Close.UNAUTHORIZED, "The API key that authorized this socket was revoked")
        return closed

    # ------------------------------------------------------------ engine events
    async def on_event(self, event: JobEvent) -> None:
        if event.status not in _PUSHED_STATUSES:
            return
        channel = self._channel_of_account.get(event.account_id)
        if channel is None:
            channel = client_channel(self.engine.accounts.get_account(event.account_id).client_id)
            self._channel_of_account[event.account_id] = channel
        listeners = self._subscribers.get(channel)
        if not listeners:
            return
        listeners = set(listeners) - self._close_revoked(listeners)
        done = event.status == "done"
        payload = {
            "request_id": event.job_id,
            "status": event.status,
            "preview": f"data:image/jpeg;base64,{event.preview}" if event.preview and not done else None,
            "result_url": self.engine.signed_url(event.result_file) if done and event.result_file else None,
            "progress": f"{100.0 if done else event.progress:.2f}",
        }
        frame = pusher.event_frame("request.status.updated", payload, channel)
        for connection in listeners:
            connection.send(frame)

    def close_all(self) -> None:
        """On shutdown: 4200 tells clients to reconnect at once (to the next server)."""
        for connection in list(self._connections):
            connection.close(Close.RECONNECT, "Server shutting down")

    # ------------------------------------------------------------ one socket
    async def serve(self, socket: WebSocket, key: str) -> None:
        await socket.accept()
        address = socket.client.host if socket.client else ""
        refusal = self._refusal(key, socket.query_params.get("protocol"))
        if refusal is None and self._sockets_of_ip.get(address, 0) >= self.max_sockets_per_ip:
            refusal = Close.OVER_CAPACITY, f"Too many connections from this address (at most {self.max_sockets_per_ip})"
        if refusal is not None:
            code, message = refusal
            await socket.send_text(pusher.error_frame(code, message))
            await socket.close(code=code, reason=message)
            return
        self._sockets_of_ip[address] = self._sockets_of_ip.get(address, 0) + 1
        try:
            await self._serve(socket)
        finally:
            remaining = self._sockets_of_ip.pop(address, 1) - 1
            if remaining > 0:
                self._sockets_of_ip[address] = remaining

    async def _serve(self, socket: WebSocket) -> None:
        connection = _Connection(socket)
        self._connections.add(connection)
        connection.send(
            pusher.event_frame(
                "pusher:connection_established",
                {"socket_id": connection.socket_id, "activity_timeout": _seconds(self.activity_timeout)},
            )
        )
        writer = asyncio.create_task(self._write(connection))
        watchdog = asyncio.create_task(self._watch(connection))
        reader = asyncio.create_task(self._read(connection))
        try:
            await asyncio.wait({writer, reader}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (writer, watchdog, reader):
                task.cancel()
            await asyncio.gather(writer, watchdog, reader, return_exceptions=True)
            self._forget(connection)

    def _refusal(self, key: str, protocol: str | None) -> tuple[int, str] | None:
        if key not in self.keys:
            return Close.APP_NOT_FOUND, f"Application does not exist: {key}"
        if protocol is None:
            return Close.NO_PROTOCOL, "No protocol version supplied"
        if not protocol.isdigit():
            return Close.INVALID_VERSION, f"Invalid version string format: {protocol}"
        if int(protocol) not in pusher.PROTOCOL_VERSIONS:
            return Close.UNSUPPORTED_PROTOCOL, f"Unsupported protocol version: {protocol}"
        return None

    async def _write(self, connection: _Connection) -> None:
        while True:
            item = await connection.outbox.get()
            if isinstance(item, tuple):
                code, reason = item
                with contextlib.suppress(Exception):
                    await connection.socket.send_text(pusher.error_frame(code, reason))
                    await connection.socket.close(code=code, reason=reason)
                return
            await connection.socket.send_text(item)

    async def _watch(self, connection: _Connection) -> None:
        """After ``activity_timeout`` of silence, ping; after ``pong_timeout`` more, close with 4201."""
        pinged = False
        while True:
            silent = time.monotonic() - connection.last_heard
            if pinged and silent >= self.activity_timeout + self.pong_timeout:
                connection.close(Close.PONG_NOT_RECEIVED, "Pong reply not received in time")
                return
            if not pinged and silent >= self.activity_timeout:
                connection.send(pusher.event_frame("pusher:ping", {}))
                pinged = True
            elif silent < self.activity_timeout:
                pinged = False
            wait = (self.activity_timeout + (self.pong_timeout if pinged else 0)) - silent
            await asyncio.sleep(min(max(wait, 0.05), _REVOCATION_CHECK_SECONDS))
            if self._close_revoked([connection]):
                return

    async def _read(self, connection: _Connection) -> None:
        with contextlib.suppress(WebSocketDisconnect):
            while True:
                message = await connection.socket.receive()
                if message["type"] == "websocket.disconnect":
                    return
                connection.last_heard = time.monotonic()
                text = message.get("text")
                if text is None and message.get("bytes") is not None:
                    text = message["bytes"].decode("utf-8", "replace")
                self._handle(connection, text or "")

    def _handle(self, connection: _Connection, text: str) -> None:
        frame = pusher.parse_frame(text)
        if frame is None:
            connection.send(pusher.error_frame(None, "Invalid message format"))
            return
        event, data, channel = frame
        if event == "pusher:ping":
            connection.send(pusher.event_frame("pusher:pong", {}))
        elif event == "pusher:pong":
            pass
        elif event == "pusher:subscribe":
            self._subscribe(connection, data if isinstance(data, dict) else {})
        elif event == "pusher:unsubscribe":
            name = data.get("channel") if isinstance(data, dict) else None
            if isinstance(name, str):
                self._leave(connection, name)
        elif event.startswith("client-"):
            connection.send(pusher.error_frame(Close.CLIENT_EVENT_REJECTED, "Client events are not enabled"))
        # Other pusher: events (signin, cache channels) are not offered; Pusher servers ignore unknown ones.

    def _subscribe(self, connection: _Connection, data: dict[str, Any]) -> None:
        channel = data.get("channel")
        if not isinstance(channel, str) or not pusher.valid_channel_name(channel):
            connection.send(pusher.error_frame(4009, f"Invalid channel name: {channel!r}"))
            return
        if channel.startswith("presence-"):
            self._refuse(connection, channel, "Presence channels are not offered by drylocal", 403)
            return
        if not channel.startswith("private-"):
            # drylocal publishes on private channels alone, each signed for one account and one socket, so a
            # socket can hold only its account's channel; a public one would be a free, unbounded subscription.
            self._refuse(connection, channel, "Only private channels, authorized through /broadcasting/auth", 403)
            return

        if channel.startswith("private-") and not pusher.is_valid_auth(
            data.get("auth"), self.keys, self.secret, connection.socket_id, channel
        ):
            self._refuse(connection, channel, "Invalid signature: authorize through /broadcasting/auth", 401)
            return
        if channel not in connection.channels:
            connection.channels.add(channel)
            self._subscribers.setdefault(channel, set()).add(connection)
        granted_by = self._grants.pop((connection.socket_id, channel), None)
        if granted_by:
            connection.keys[channel] = granted_by
        connection.send(pusher.event_frame("pusher_internal:subscription_succeeded", {}, channel))

    @staticmethod
    def _refuse(connection: _Connection, channel: str, message: str, status: int) -> None:
        connection.send(
            pusher.object_frame("pusher:subscription_error", {"type": "AuthError", "error": message, "status": status}, channel)
        )

    def _leave(self, connection: _Connection, channel: str) -> None:
        connection.channels.discard(channel)
        listeners = self._subscribers.get(channel)
        if listeners is not None:
            listeners.discard(connection)
            if not listeners:
                del self._subscribers[channel]

    def _forget(self, connection: _Connection) -> None:
        for channel in list(connection.channels):
            self._leave(connection, channel)
        self._connections.discard(connection)


def _seconds(value: float) -> float | int:
    """Clients expect whole seconds; only tests shorten the timeout below one."""
    return int(value) if float(value).is_integer() else value
