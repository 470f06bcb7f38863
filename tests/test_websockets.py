"""Job updates over drylocal's Pusher-protocol WebSocket, received by the real clients users run:
pysher (PyPI) and pusher-js / laravel-echo (npm, driven by node), over ws://127.0.0.1."""

from __future__ import annotations

import asyncio
import base64
import io
import json
import queue
import shutil
import subprocess
import threading
import time
from pathlib import Path

import httpx
import pytest
from PIL import Image

from tests import flux_checkpoint
from tests.conftest import API, live_server
from tests.user_models import register_models, tiny_flux_entry

APP_KEY = "dryapi-api-prod-key"
NODE_CLIENTS = Path(__file__).parent / "pusher_clients"
STEPS = 3


@pytest.fixture(scope="module")
def tiny_flux(tmp_path_factory) -> Path:
    return flux_checkpoint.build_tiny_flux(tmp_path_factory.mktemp("ws") / "flux")


@pytest.fixture
def server(settings, tiny_flux):
    register_models(settings, tiny_flux_entry(tiny_flux))
    with live_server(settings) as live:
        yield live


def submit_image(server, key: str) -> str:
    body = {"prompt": "a red cat", "model": "TinyFlux", "width": 64, "height": 48, "seed": 1, "steps": STEPS}
    response = httpx.post(f"{server.url}{API}/txt2img", json=body, headers={"Authorization": f"Bearer {key}"})
    assert response.status_code == 200, response.text
    return response.json()["data"]["request_id"]


def check_updates(server, updates: list[dict], request_id: str) -> None:
    """What the docs promise a listener: processing, in_progress steps with JPEG previews, done with a URL."""
    mine = [u for u in updates if u["request_id"] == request_id]
    statuses = [u["status"] for u in mine]
    assert statuses[0] == "processing" and statuses[-1] == "done", statuses
    steps = [u for u in mine if u["status"] == "in_progress"]
    assert len(steps) >= STEPS
    for update in mine:
        assert set(update) == {"request_id", "status", "preview", "result_url", "progress"}
        assert isinstance(update["progress"], str) and update["progress"].count(".") == 1
        assert len(update["progress"].split(".")[1]) == 2
    progress = [float(u["progress"]) for u in mine]
    assert progress == sorted(progress) and progress[-1] == 100.0
    previews = [u["preview"] for u in steps if u["preview"]]
    assert previews and all(p.startswith("data:image/jpeg;base64,") for p in previews)
    assert Image.open(io.BytesIO(base64.b64decode(previews[-1].split(",", 1)[1]))).format == "JPEG"
    done = mine[-1]
    assert done["preview"] is None and done["result_url"]
    image = Image.open(io.BytesIO(httpx.get(done["result_url"]).content))
    assert image.size == (64, 48)
    assert all(u["result_url"] is None for u in mine[:-1])


def wait_for(condition, timeout: float = 60.0) -> None:
    deadline = time.time() + timeout
    while not condition():
        assert time.time() < deadline, "timed out"
        time.sleep(0.05)


# ------------------------------------------------------------------- pysher


def test_pysher_receives_a_jobs_progress_previews_and_result(server):
    import pysher

    key, account = server.new_key("py")
    channel_name = f"private-client.{account.client_id}"
    updates: list[dict] = []
    subscribed = threading.Event()
    client = pysher.Pusher(
        APP_KEY, secure=False, custom_host="127.0.0.1", port=server.port,
        auth_endpoint=f"{server.url}/broadcasting/auth", auth_endpoint_headers={"Authorization": f"Bearer {key}"},
    )

    def on_connect(_data) -> None:
        # Subscribing here, on every (re)connect, is the documented way: the socket id changes.
        channel = client.subscribe(channel_name)
        channel.bind("request.status.updated", lambda data: updates.append(json.loads(data)))
        channel.bind("pusher_internal:subscription_succeeded", lambda _: subscribed.set())

    client.connection.bind("pusher:connection_established", on_connect)
    client.connect()
    try:
        assert subscribed.wait(20)
        request_id = submit_image(server, key)
        wait_for(lambda: any(u["request_id"] == request_id and u["status"] == "done" for u in updates))
        check_updates(server, updates, request_id)

        # The server drops every socket (4200: reconnect now); pysher reconnects, re-authorizes, and
        # the next job's updates arrive on the new socket.
        subscribed.clear()
        server.app.state.pusher.close_all()
        assert subscribed.wait(30)
        second = submit_image(server, key)
        wait_for(lambda: any(u["request_id"] == second and u["status"] == "done" for u in updates))
    finally:
        client.disconnect(timeout=5)


# ------------------------------------------------------------------- pusher-js and laravel-echo


class NodeClient:
    def __init__(self, options: dict) -> None:
        self.process = subprocess.Popen(
            ["node", str(NODE_CLIENTS / "listen.mjs"), json.dumps(options)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        self.records: queue.Queue[dict] = queue.Queue()
        self.seen: list[dict] = []
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        for line in self.process.stdout:
            self.records.put(json.loads(line))

    def until(self, condition, timeout: float = 60.0) -> dict:
        deadline = time.time() + timeout
        while True:
            remaining = deadline - time.time()
            if remaining <= 0:
                raise AssertionError(f"no such record; saw {self.seen[-10:]}; stderr: {self._stderr()}")
            try:
                record = self.records.get(timeout=remaining)
            except queue.Empty:
                continue
            self.seen.append(record)
            if condition(record):
                return record

    def _stderr(self) -> str:
        if self.process.poll() is None:
            return ""
        return self.process.stderr.read()

    def close(self) -> None:
        self.process.stdin.close()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()


@pytest.fixture
def node_client():
    if shutil.which("node") is None or not (NODE_CLIENTS / "node_modules" / "pusher-js").is_dir():
        pytest.fail("node and the npm clients are needed: scripts/setup.sh installs them")
    clients: list[NodeClient] = []

    def start(**options) -> NodeClient:
        clients.append(NodeClient(options))
        return clients[-1]

    yield start
    for client in clients:
        client.close()


@pytest.mark.parametrize("library", ["pusher-js", "echo"])
def test_node_clients_receive_updates_and_survive_a_reconnect(server, node_client, library):
    key, account = server.new_key(library)
    client = node_client(port=server.port, appKey=APP_KEY, apiKey=key, channel=f"client.{account.client_id}", client=library)
    client.until(lambda r: r["type"] == "subscribed")
    request_id = submit_image(server, key)
    client.until(lambda r: r["type"] == "event" and r["data"]["request_id"] == request_id and r["data"]["status"] == "done")
    check_updates(server, [r["data"] for r in client.seen if r["type"] == "event"], request_id)

    server.app.state.pusher.close_all()
    client.until(lambda r: r["type"] == "state" and r["current"] == "connected")
    client.until(lambda r: r["type"] == "subscribed")
    second = submit_image(server, key)
    client.until(lambda r: r["type"] == "event" and r["data"]["request_id"] == second and r["data"]["status"] == "done")


def test_pusher_js_is_refused_another_clients_channel(server, node_client):
    key, _ = server.new_key("me")
    _, other = server.new_key("someone-else")
    client = node_client(port=server.port, appKey=APP_KEY, apiKey=key, channel=f"client.{other.client_id}", client="pusher-js")
    assert client.until(lambda r: r["type"] in ("subscribed", "subscription_error"))["status"] == 403
    # Even a job of the other account's never reaches this socket.
    other_key = server.engine.accounts.create_key(other, "second")
    request_id = submit_image(server, other_key)
    wait_for(lambda: server.engine.jobs.get(request_id).status == "done")
    time.sleep(0.3)
    while not client.records.empty():
        assert client.records.get()["type"] != "event"


# ------------------------------------------------------------------- the auth endpoint


def test_auth_endpoint_signs_like_the_pusher_server_library_for_json_and_form_bodies(server):
    import pusher as pusher_server

    key, account = server.new_key("auth")
    channel = f"private-client.{account.client_id}"
    headers = {"Authorization": f"Bearer {key}"}
    as_form = httpx.post(f"{server.url}/broadcasting/auth", data={"socket_id": "123.456", "channel_name": channel}, headers=headers)
    as_json = httpx.post(f"{server.url}/broadcasting/auth", json={"socket_id": "123.456", "channel_name": channel}, headers=headers)
    assert as_form.status_code == as_json.status_code == 200
    assert as_form.json() == as_json.json()
    oracle = pusher_server.Pusher(app_id="1", key=APP_KEY, secret=server.app.state.pusher.secret)
    assert as_json.json() == oracle.authenticate(channel=channel, socket_id="123.456")


def test_auth_endpoint_refusals_use_the_error_envelope(server):
    key, account = server.new_key("auth")
    _, other = server.new_key("other")
    url = f"{server.url}/broadcasting/auth"
    headers = {"Authorization": f"Bearer {key}"}
    mine = f"private-client.{account.client_id}"
    no_key = httpx.post(url, data={"socket_id": "1.2", "channel_name": mine})
    assert no_key.status_code == 401 and "message" in no_key.json()
    foreign = httpx.post(url, data={"socket_id": "1.2", "channel_name": f"private-client.{other.client_id}"}, headers=headers)
    assert foreign.status_code == 403 and account.client_id in foreign.json()["message"]
    bad = httpx.post(url, json={"socket_id": "1.2; drop", "channel_name": "private client"}, headers=headers)
    assert bad.status_code == 422
    fields = json.dumps(bad.json())
    assert "socket_id" in fields and "channel_name" in fields


# ------------------------------------------------------------------- the protocol, frame by frame


async def _frames(socket, count: int) -> list[dict]:
    return [json.loads(await asyncio.wait_for(socket.recv(), 10)) for _ in range(count)]


def _ws(server, key: str = APP_KEY, query: str = "?protocol=7&client=test&version=1") -> str:
    return f"ws://127.0.0.1:{server.port}/app/{key}{query}"


def test_connection_refusals_carry_the_protocol_codes(server):
    import websockets

    async def refused(url: str) -> tuple[int, int]:
        async with websockets.connect(url) as socket:
            frame = (await _frames(socket, 1))[0]
            assert frame["event"] == "pusher:error"
            with pytest.raises(websockets.ConnectionClosed):
                await asyncio.wait_for(socket.recv(), 10)
            return frame["data"]["code"], socket.close_code

    assert asyncio.run(refused(_ws(server, key="wrong-key"))) == (4001, 4001)
    assert asyncio.run(refused(_ws(server, query=""))) == (4008, 4008)
    assert asyncio.run(refused(_ws(server, query="?protocol=x"))) == (4006, 4006)
    assert asyncio.run(refused(_ws(server, query="?protocol=3"))) == (4007, 4007)


def test_handshake_ping_subscribe_and_bad_frames(server):
    import websockets

    key, account = server.new_key("raw")
    channel = f"private-client.{account.client_id}"

    async def session() -> None:
        async with websockets.connect(_ws(server)) as socket:
            hello = (await _frames(socket, 1))[0]
            assert hello["event"] == "pusher:connection_established"
            data = json.loads(hello["data"])  # a JSON string, as pysher requires
            assert data["activity_timeout"] == 30 and data["socket_id"].count(".") == 1
            socket_id = data["socket_id"]

            await socket.send(json.dumps({"event": "pusher:ping", "data": {}}))
            assert (await _frames(socket, 1))[0]["event"] == "pusher:pong"

            forged = {"event": "pusher:subscribe", "data": {"channel": channel, "auth": f"{APP_KEY}:{'0' * 64}"}}
            await socket.send(json.dumps(forged))
            refusal = (await _frames(socket, 1))[0]
            assert refusal["event"] == "pusher:subscription_error" and refusal["data"]["status"] == 401

            # A token signed for another socket id does not open the channel here.
            other = httpx.post(
                f"{server.url}/broadcasting/auth", json={"socket_id": "1.1", "channel_name": channel},
                headers={"Authorization": f"Bearer {key}"},
            ).json()["auth"]
            await socket.send(json.dumps({"event": "pusher:subscribe", "data": {"channel": channel, "auth": other}}))
            assert (await _frames(socket, 1))[0]["event"] == "pusher:subscription_error"

            auth = httpx.post(
                f"{server.url}/broadcasting/auth", json={"socket_id": socket_id, "channel_name": channel},
                headers={"Authorization": f"Bearer {key}"},
            ).json()["auth"]
            await socket.send(json.dumps({"event": "pusher:subscribe", "data": {"channel": channel, "auth": auth}}))
            joined = (await _frames(socket, 1))[0]
            assert joined == {"event": "pusher_internal:subscription_succeeded", "channel": channel, "data": "{}"}

            await socket.send("not json")
            assert (await _frames(socket, 1))[0]["event"] == "pusher:error"
            await socket.send(json.dumps({"event": "client-hello", "channel": channel, "data": {}}))
            assert (await _frames(socket, 1))[0]["data"]["code"] == 4301

            await socket.send(json.dumps({"event": "pusher:unsubscribe", "data": {"channel": channel}}))
            await socket.send(json.dumps({"event": "pusher:ping", "data": {}}))
            assert (await _frames(socket, 1))[0]["event"] == "pusher:pong"
            assert server.app.state.pusher._subscribers.get(channel) is None

    asyncio.run(session())


def test_a_silent_socket_is_pinged_then_closed_with_4201(settings, tiny_flux):
    import websockets

    quick = settings.model_copy(update={"pusher_activity_timeout": 0.5, "pusher_pong_timeout": 0.5})
    with live_server(quick) as server:

        async def session() -> int:
            async with websockets.connect(_ws(server), ping_interval=None) as socket:
                assert json.loads((await _frames(socket, 1))[0]["data"])["activity_timeout"] == 0.5
                assert (await _frames(socket, 1))[0]["event"] == "pusher:ping"
                with pytest.raises(websockets.ConnectionClosed):
                    while True:
                        await asyncio.wait_for(socket.recv(), 10)
                return socket.close_code

        assert asyncio.run(session()) == 4201
