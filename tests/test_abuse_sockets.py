"""Sockets as a resource an attacker can hoard: caps per address and per socket, private channels only.

Once, one WebSocket subscribed to 200,000 channels without a key.
"""

from __future__ import annotations

import asyncio
import json

import websockets

from tests.conftest import live_server


def _url(server) -> str:
    return server.url.replace("http", "ws") + "/app/dryapi-api-prod-key?protocol=7"


async def _open(server):
    socket = await websockets.connect(_url(server))
    assert json.loads(await socket.recv())["event"] == "pusher:connection_established"
    return socket


def test_sockets_per_address_are_capped(settings):
    with live_server(settings.model_copy(update={"pusher_max_sockets_per_ip": 3})) as server:

        async def scenario():
            held = [await _open(server) for _ in range(3)]
            extra = await websockets.connect(_url(server))
            frame = json.loads(await extra.recv())
            try:
                await extra.recv()
            except websockets.ConnectionClosed as closed:
                code = closed.rcvd.code
            await held[0].close()
            await asyncio.sleep(0.2)
            again = await _open(server)  # a freed place can be taken again
            for socket in (*held[1:], again):
                await socket.close()
            return frame, code

        frame, code = asyncio.run(scenario())
        assert frame["event"] == "pusher:error" and _data(frame)["code"] == 4100 and code == 4100


def _data(frame: dict) -> dict:
    return frame["data"] if isinstance(frame["data"], dict) else json.loads(frame["data"])


def test_public_channels_are_refused(settings):
    with live_server(settings) as server:

        async def scenario():
            socket = await _open(server)
            answers = []
            for channel in ("news", "client.1", "cache-x"):
                await socket.send(json.dumps({"event": "pusher:subscribe", "data": {"channel": channel}}))
                answers.append(json.loads(await socket.recv()))
            await socket.close()
            return answers

        for answer in asyncio.run(scenario()):
            assert answer["event"] == "pusher:subscription_error" and _data(answer)["status"] == 403
