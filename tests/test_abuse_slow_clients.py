"""Slow senders (issue 20, connection hygiene) against ``drylocal serve`` as users run it: headers that
trickle in and bodies that stop are cut off; prompt requests and WebSockets are not."""

from __future__ import annotations

import asyncio
import json
import socket
import time

import httpx
import pytest
import websockets

from server.harness import ServerProcess

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    served = ServerProcess(tmp_path_factory.mktemp("slow-clients") / "home")
    served.start(DRYLOCAL_HEADER_TIMEOUT_SECONDS="1", DRYLOCAL_BODY_IDLE_SECONDS="1")
    yield served
    served.close()


def closed_after(connection: socket.socket, send_every: float, pieces: list[bytes], limit: float = 10.0) -> float | None:
    """Seconds until the server closed the connection while ``pieces`` were sent one by one; None if not."""
    started = time.monotonic()
    connection.settimeout(send_every)
    for piece in pieces:
        try:
            connection.sendall(piece)
            if connection.recv(4096) == b"":
                return time.monotonic() - started
        except socket.timeout:
            continue
        except OSError:
            return time.monotonic() - started
        if time.monotonic() - started > limit:
            break
    return None


def test_headers_sent_a_byte_at_a_time_are_cut_off(server):
    with socket.create_connection(("127.0.0.1", server.port)) as connection:
        request = b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: " + b"a" * 100
        seconds = closed_after(connection, 0.2, [request[i : i + 1] for i in range(len(request))])
    assert seconds is not None and seconds < 4


def test_a_body_that_stops_is_cut_off(server):
    head = (b"POST /api/v1/client/txt2embedding HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            b"Authorization: Bearer " + server.key.encode() + b"\r\nContent-Length: 1000\r\n\r\n{\"input\": \"")
    with socket.create_connection(("127.0.0.1", server.port)) as connection:
        connection.sendall(head)
        connection.settimeout(5)
        started = time.monotonic()
        assert connection.recv(4096) == b""  # closed, no answer
        assert time.monotonic() - started < 4


def test_prompt_requests_and_kept_alive_connections_are_served(server):
    with httpx.Client(base_url=server.url) as client:
        for _ in range(3):  # one connection, kept alive across the deadline
            assert client.get("/health").status_code == 200
            time.sleep(0.6)


def test_a_websocket_outlives_the_header_deadline(server):
    async def scenario():
        async with websockets.connect(f"ws://127.0.0.1:{server.port}/app/dryapi-api-prod-key?protocol=7") as socket_:
            established = json.loads(await socket_.recv())
            assert established["event"] == "pusher:connection_established"
            await asyncio.sleep(2.5)
            await socket_.send(json.dumps({"event": "pusher:ping", "data": {}}))
            assert json.loads(await asyncio.wait_for(socket_.recv(), 5))["event"] == "pusher:pong"

    asyncio.run(scenario())
