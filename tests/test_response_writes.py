"""A response's head and body leave in one socket write (server/response_writes.py), and no head waits on a
body that is slow to come."""

from __future__ import annotations

import asyncio
import socket
import threading
import time

import pytest
import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from server.response_writes import one_write_per_response

STREAM_PAUSE = 0.5


async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        while (message := await receive())["type"] != "lifespan.shutdown":
            await send({"type": f"{message['type']}.complete"})
        await send({"type": "lifespan.shutdown.complete"})
        return
    path = scope["path"]
    if path == "/echo":
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"%d" % len(body))]})
        await send({"type": "http.response.body", "body": body})
    elif path == "/empty":
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})
    elif path == "/stream":  # the head, then a chunk that takes a while to make
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
        await asyncio.sleep(STREAM_PAUSE)
        await send({"type": "http.response.body", "body": b"late", "more_body": True})
        await send({"type": "http.response.body", "body": b""})
    else:
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]})
        await send({"type": "http.response.body", "body": b"ok"})


class _CountedWrites:
    def __init__(self, transport, writes: list[bytes]) -> None:
        self._transport, self.writes = transport, writes

    def write(self, data: bytes) -> None:
        self.writes.append(bytes(data))
        self._transport.write(data)

    def __getattr__(self, name):
        return getattr(self._transport, name)


WRITES: list[bytes] = []


class CountingProtocol(HttpToolsProtocol):
    """uvicorn's protocol with every socket write recorded, beneath the head holding under test."""

    def connection_made(self, transport) -> None:
        super().connection_made(_CountedWrites(transport, WRITES))


@pytest.fixture(scope="module")
def port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        free = probe.getsockname()[1]
    config = uvicorn.Config(app, host="127.0.0.1", port=free, log_level="warning",
                            http=one_write_per_response(CountingProtocol))
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline, "the server did not start"
        time.sleep(0.02)
    yield free
    server.should_exit = True
    thread.join(10)


def read_response(connection: socket.socket, head_only: bool = False) -> bytes:
    data = b""
    while b"\r\n\r\n" not in data:
        data += connection.recv(65536)
    if head_only:
        return data
    head, _, body = data.partition(b"\r\n\r\n")
    length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length")), 0)
    while len(body) < length:
        body += connection.recv(65536)
    return head + b"\r\n\r\n" + body


def test_each_response_on_a_kept_alive_connection_is_one_write(port):
    WRITES.clear()
    with socket.create_connection(("127.0.0.1", port)) as connection:
        for _ in range(3):
            connection.sendall(b"GET /ok HTTP/1.1\r\nHost: x\r\n\r\n")
            assert read_response(connection).endswith(b"\r\n\r\nok")
    assert len(WRITES) == 3 and all(w.startswith(b"HTTP/1.1 200 OK") and w.endswith(b"ok") for w in WRITES)


def test_a_response_without_a_body_still_gets_its_head(port):
    WRITES.clear()
    with socket.create_connection(("127.0.0.1", port)) as connection:
        connection.settimeout(5)
        connection.sendall(b"GET /empty HTTP/1.1\r\nHost: x\r\n\r\n")
        assert read_response(connection, head_only=True).startswith(b"HTTP/1.1 204")
        connection.sendall(b"HEAD /ok HTTP/1.1\r\nHost: x\r\n\r\n")
        assert read_response(connection, head_only=True).startswith(b"HTTP/1.1 200")
    assert len(WRITES) == 2


def test_the_head_of_a_stream_is_not_held_for_its_first_chunk(port):
    with socket.create_connection(("127.0.0.1", port)) as connection:
        connection.settimeout(5)
        asked = time.monotonic()
        connection.sendall(b"GET /stream HTTP/1.1\r\nHost: x\r\n\r\n")
        head = read_response(connection, head_only=True)
        assert time.monotonic() - asked < STREAM_PAUSE / 2
        assert head.startswith(b"HTTP/1.1 200") and b"late" not in head
        rest = b""
        while not rest.endswith(b"0\r\n\r\n"):
            rest += connection.recv(65536)
        assert b"late" in rest


def test_a_continue_goes_out_before_the_body_is_sent(port):
    with socket.create_connection(("127.0.0.1", port)) as connection:
        connection.settimeout(5)
        connection.sendall(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n")
        assert connection.recv(65536).startswith(b"HTTP/1.1 100 Continue")
        connection.sendall(b"hello")
        assert read_response(connection).endswith(b"\r\n\r\nhello")


def test_a_closing_response_is_written_whole_before_the_close(port):
    with socket.create_connection(("127.0.0.1", port)) as connection:
        connection.settimeout(5)
        connection.sendall(b"GET /ok HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        data = b""
        while chunk := connection.recv(65536):
            data += chunk
        assert data.startswith(b"HTTP/1.1 200") and data.endswith(b"\r\n\r\nok")


class RecordingTransport:
    """A socket as the protocol sees it, recording what is written and when it is closed."""

    def __init__(self) -> None:
        self.events: list[bytes | str] = []
        self.closing = False

    def write(self, data: bytes) -> None:
        assert not self.closing, "a write after the close is lost"
        self.events.append(bytes(data))

    def close(self) -> None:
        self.closing = True
        self.events.append("close")

    def is_closing(self) -> bool:
        return self.closing

    def get_extra_info(self, name: str, default=None):
        return {"sockname": ("127.0.0.1", 8000), "peername": ("127.0.0.1", 50000)}.get(name, default)

    def pause_reading(self) -> None: ...

    def resume_reading(self) -> None: ...


def test_a_head_still_held_when_the_server_shuts_down_goes_out_before_the_close():
    from uvicorn.server import ServerState

    protocols: list = []

    async def shutting_down(scope, receive, send):  # a HEAD answered, and the server shuts down in that step
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]})
        await send({"type": "http.response.body", "body": b"ok"})  # uvicorn writes no body for a HEAD
        protocols[0].shutdown()

    async def scenario() -> list:
        config = uvicorn.Config(shutting_down, log_level="warning", lifespan="off")
        protocol = one_write_per_response(HttpToolsProtocol)(config, ServerState(), {}, asyncio.get_running_loop())
        protocols.append(protocol)
        transport = RecordingTransport()
        protocol.connection_made(transport)
        protocol.data_received(b"HEAD /gone HTTP/1.1\r\nHost: x\r\n\r\n")
        for _ in range(20):
            await asyncio.sleep(0)
        return transport.events

    events = asyncio.run(scenario())
    assert len(events) == 2 and events[0].startswith(b"HTTP/1.1 200") and events[1] == "close"
