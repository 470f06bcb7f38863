"""Revoking a key ends what it opened: its WebSocket is closed, and result URLs signed before it stop.

Once, a revoked key's open WebSocket kept receiving events with fresh signed result URLs, and they
downloaded.
"""

from __future__ import annotations

import asyncio
import json

import httpx
import websockets

from tests.conftest import live_server

EMBED = {"input": "hello", "model": "MiniLM_L6_v2", "return_result_in_response": False}


async def _subscribe(base: str, key: str, client_id: str):
    socket = await websockets.connect(base.replace("http", "ws") + "/app/dryapi-api-prod-key?protocol=7")
    established = json.loads(await socket.recv())
    socket_id = json.loads(established["data"])["socket_id"]
    channel = f"private-client.{client_id}"
    async with httpx.AsyncClient() as http:
        auth = await http.post(
            f"{base}/broadcasting/auth",
            json={"socket_id": socket_id, "channel_name": channel},
            headers={"Authorization": f"Bearer {key}"},
        )
    await socket.send(json.dumps({"event": "pusher:subscribe", "data": {"channel": channel, "auth": auth.json()["auth"]}}))
    assert json.loads(await socket.recv())["event"] == "pusher_internal:subscription_succeeded"
    return socket


def test_a_revoked_keys_socket_is_closed_and_gets_no_more_events(settings):
    with live_server(settings) as server:
        key, account = server.new_key("leaver", tier="premium", balance=1.0)
        server.engine.accounts.create_key(account, "other")  # the account keeps another key

        async def scenario():
            socket = await _subscribe(server.url, key, account.client_id)
            server.engine.accounts.revoke_key("leaver")
            other = server.engine.accounts.create_key(account, "fresh")
            async with httpx.AsyncClient() as http:
                await http.post(f"{server.url}/api/v1/client/txt2embedding", json=EMBED, headers={"Authorization": f"Bearer {other}"})
            frames = []
            try:
                async with asyncio.timeout(15):
                    async for frame in socket:
                        frames.append(json.loads(frame))
            except websockets.ConnectionClosed:
                pass
            except TimeoutError:
                raise AssertionError(f"the socket stayed open: {frames}") from None
            return frames, socket.close_code

        frames, code = asyncio.run(scenario())
        assert not [f for f in frames if f.get("event") == "request.status.updated"]
        assert code == 4009


def test_result_urls_signed_before_a_revocation_stop_working(settings):
    with live_server(settings) as server:
        key, account = server.new_key("owner-of-results", tier="premium", balance=1.0)
        headers = {"Authorization": f"Bearer {key}"}
        request_id = httpx.post(f"{server.url}/api/v1/client/txt2embedding", json=EMBED, headers=headers).json()["data"]["request_id"]
        for _ in range(600):
            status = httpx.get(f"{server.url}/api/v1/client/request-status/{request_id}", headers=headers).json()["data"]
            if status["status"] == "done":
                break
            asyncio.run(asyncio.sleep(0.05))
        url = status["result_url"].replace("http://127.0.0.1:8000", server.url)
        assert httpx.get(url).status_code == 200
        server.engine.accounts.revoke_key("owner-of-results")
        assert httpx.get(url).status_code == 403
