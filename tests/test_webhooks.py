"""Webhooks against a real receiver on 127.0.0.1: signatures checked with the docs' Python recipe,
retries with the same delivery id, survival across a restart, the breaker and the SSRF refusal.

The documented retry schedule and the breaker's pause are walked on a manual clock given to the outbox
(its ``clock`` and ``sleep``), so a day of retries takes a second and every delay is exact."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import http.server
import json
import re
import threading
import time
import uuid

import pytest

from engine.database import Database
from engine.events import JobEvent
from engine.jobs import Job
from engine.tasks.txt2embedding import PIPELINE as EMBEDDINGS
from engine.webhooks import WebhookOutbox
from tests.conftest import eventually, running_api

ISO_MILLISECONDS_Z = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")


def verify_webhook(payload: bytes, signature: str, timestamp: str, secret: str) -> bool:
    """The documented verification: reject stale timestamps, compare HMAC-SHA256 of 'timestamp.body'."""
    if abs(time.time() - int(timestamp)) > 300:
        return False
    expected = "sha256=" + hmac.new(secret.encode(), f"{timestamp}.".encode() + payload, hashlib.sha256).hexdigest()
    return hmac.compare_digest(signature, expected)


class Receiver:
    """Answers 500 to the first ``fail`` deliveries, then 200; records every request."""

    def __init__(self, fail: int = 0, status: int = 500) -> None:
        self.fail, self.status, self.requests, self.paths = fail, status, [], []
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                receiver.paths.append(self.path)
                self.send_response(404)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def do_POST(self):
                receiver.paths.append(self.path)
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.requests.append((dict(self.headers), body))
                failing = len(receiver.requests) <= receiver.fail
                self.send_response(receiver.status if failing else 200)
                if receiver.status in (301, 302) and failing:
                    self.send_header("Location", "/elsewhere")
                self.send_header("Content-Length", "0")
                self.end_headers()

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def events(self) -> list[str]:
        return [json.loads(body)["event"] for _, body in self.requests]


@pytest.fixture
def fast_settings(settings):
    settings.webhook_retry_delays = (0, 0.2, 0.2, 0.2, 0.2, 0.2, 0.2, 0.2, 0.2, 0.2)
    return settings


def embed(api, url: str):
    response = api.post("txt2embedding", json={"input": "hello", "model": "MiniLM_L6_v2", "webhook_url": url})
    assert response.status_code == 200, response.json()
    return response.json()["data"]["request_id"]


def secret_of(api) -> str:
    return api.engine.accounts.authenticate(api.key).webhook_secret


DOCUMENTED_DATA = {
    "job.processing": {"job_request_id", "status", "previous_status", "job_type", "started_at"},
    "job.completed": {"job_request_id", "status", "previous_status", "job_type", "completed_at", "result_url", "processing_time_ms"},
    "job.failed": {"job_request_id", "status", "previous_status", "job_type", "failed_at", "error_code", "error_message"},
}
"""The ``data`` fields of each event, as the webhooks page lists them."""


def assert_documented_delivery(headers: dict, body: bytes, secret: str) -> dict:
    """Headers, signature and envelope as the webhooks page shows them; returns the parsed payload."""
    assert verify_webhook(body, headers["X-DryAPI-Signature"], headers["X-DryAPI-Timestamp"], secret)
    assert headers["User-Agent"] == "DryAPI-Webhook/1.0" and headers["Content-Type"] == "application/json"
    payload = json.loads(body)
    assert set(payload) == {"event", "delivery_id", "timestamp", "data"}
    assert headers["X-DryAPI-Event"] == payload["event"] and headers["X-DryAPI-Delivery-Id"] == payload["delivery_id"]
    assert str(uuid.UUID(payload["delivery_id"])) == payload["delivery_id"]
    assert ISO_MILLISECONDS_Z.fullmatch(payload["timestamp"])
    assert set(payload["data"]) == DOCUMENTED_DATA[payload["event"]]
    return payload


def test_events_arrive_signed_with_the_documented_payloads(fast_settings):
    receiver = Receiver()
    try:
        with running_api(fast_settings) as api:
            request_id = embed(api, receiver.url)
            api.wait(request_id)  # a cold model load can take longer than eventually's default
            eventually(lambda: receiver.events() == ["job.processing", "job.completed"])
            for headers, body in receiver.requests:
                payload = assert_documented_delivery(headers, body, secret_of(api))
                assert payload["data"]["job_request_id"] == request_id and payload["data"]["job_type"] == "txt2embedding"
            started = json.loads(receiver.requests[0][1])["data"]
            assert started["status"] == "processing" and started["previous_status"] == "pending"
            assert ISO_MILLISECONDS_Z.fullmatch(started["started_at"])
            done = json.loads(receiver.requests[1][1])["data"]
            assert done["status"] == "done" and done["previous_status"] == "processing"
            assert ISO_MILLISECONDS_Z.fullmatch(done["completed_at"])
            assert done["result_url"].startswith("http") and done["processing_time_ms"] >= 0
    finally:
        receiver.close()


def test_a_job_failing_mid_run_sends_job_failed_signed_with_the_documented_payload(fast_settings, monkeypatch):
    def failing_run(self, model, params, progress):
        raise RuntimeError("the device stopped answering")

    monkeypatch.setattr(type(EMBEDDINGS), "run", failing_run)
    receiver = Receiver()
    try:
        with running_api(fast_settings) as api:
            request_id = embed(api, receiver.url)
            status = api.wait(request_id)
            assert status["status"] == "error"
            eventually(lambda: receiver.events() == ["job.processing", "job.failed"])
            ((headers, body),) = [(h, b) for h, b in receiver.requests if h["X-DryAPI-Event"] == "job.failed"]
            payload = assert_documented_delivery(headers, body, secret_of(api))
            assert payload["event"] == "job.failed"
            failed = payload["data"]
            assert failed["job_request_id"] == request_id and failed["job_type"] == "txt2embedding"
            assert failed["status"] == "error" and failed["previous_status"] == "processing"
            assert ISO_MILLISECONDS_Z.fullmatch(failed["failed_at"])
            assert failed["error_code"] == "PROCESSING_ERROR" == status["error_code"]
            assert "the device stopped answering" in failed["error_message"] and failed["error_message"] == status["error_message"]
            eventually(lambda: [r["state"] for r in api.engine.db.query(
                "SELECT state FROM webhook_outbox WHERE event = 'job.failed'")] == ["delivered"])
    finally:
        receiver.close()


def test_failures_are_retried_with_the_same_delivery_id(fast_settings):
    receiver = Receiver(fail=3)
    try:
        with running_api(fast_settings) as api:
            embed(api, receiver.url)
            eventually(lambda: "job.completed" in receiver.events() and len(receiver.requests) >= 5, timeout=20)
            ids = {}
            for headers, body in receiver.requests:
                ids.setdefault(json.loads(body)["event"], set()).add(headers["X-DryAPI-Delivery-Id"])
            assert all(len(delivery_ids) == 1 for delivery_ids in ids.values())
            eventually(lambda: all(r["state"] == "delivered" for r in api.engine.db.query("SELECT state FROM webhook_outbox")))
    finally:
        receiver.close()


def test_redirects_count_as_failures(fast_settings):
    receiver = Receiver(fail=1, status=302)
    try:
        with running_api(fast_settings) as api:
            embed(api, receiver.url)
            eventually(lambda: len(receiver.requests) >= 3, timeout=20)
            # The 302 (to whichever event came first) was not followed (nothing reached /elsewhere)
            # and cost an attempt.
            eventually(lambda: all(r["state"] == "delivered" for r in api.engine.db.query("SELECT state FROM webhook_outbox")))
            rows = api.engine.db.query("SELECT attempts FROM webhook_outbox")
            assert sorted(r["attempts"] for r in rows) == [1, 2]
            assert set(receiver.paths) == {"/hook"}
    finally:
        receiver.close()


def test_pending_deliveries_survive_a_restart(fast_settings):
    receiver = Receiver()
    receiver.close()  # nobody listens: the first attempts fail
    fast_settings.webhook_retry_delays = (0, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5)
    with running_api(fast_settings) as api:
        embed(api, receiver.url)
        eventually(lambda: api.engine.db.query("SELECT COUNT(*) AS n FROM webhook_outbox WHERE attempts > 0")[0]["n"] == 2)
        stored = {r["delivery_id"] for r in api.engine.db.query("SELECT delivery_id FROM webhook_outbox")}
        url = receiver.url
    port = int(url.rsplit(":", 1)[1].split("/")[0])
    revived = Receiver()
    revived.server.server_close()
    revived.server = http.server.ThreadingHTTPServer(("127.0.0.1", port), revived.server.RequestHandlerClass)
    threading.Thread(target=revived.server.serve_forever, daemon=True).start()
    try:
        with running_api(fast_settings):
            eventually(lambda: len(revived.requests) >= 2, timeout=20)
        assert {h["X-DryAPI-Delivery-Id"] for h, _ in revived.requests} == stored
    finally:
        revived.close()


@pytest.mark.parametrize(
    "url, reason",
    [("http://example.com/hook", "https"), ("https://10.1.2.3/hook", "private"), ("https://192.168.0.10/h", "private"),
     ("ftp://127.0.0.1/x", "url")],
)
def test_unsafe_webhook_urls_are_422(api, url, reason):
    response = api.post("txt2embedding", json={"input": "hello", "model": "MiniLM_L6_v2", "webhook_url": url})
    assert response.status_code == 422
    ((field, (message,)),) = response.json()["errors"].items()
    assert field == "webhook_url" and reason in message.lower()


def test_a_start_whose_webhook_was_never_recorded_is_sent_after_a_restart(fast_settings):
    receiver = Receiver()
    try:
        with running_api(fast_settings) as api:
            request_id = embed(api, receiver.url)
            eventually(lambda: sorted(receiver.events()) == ["job.completed", "job.processing"])
            # As if the process had stopped between persisting "processing" and recording its webhook.
            api.engine.db.execute("DELETE FROM webhook_outbox WHERE event = 'job.processing'")
        receiver.requests.clear()
        with running_api(fast_settings):
            eventually(lambda: receiver.events() == ["job.processing"])
        body = json.loads(receiver.requests[0][1])
        assert body["data"]["job_request_id"] == request_id and body["data"]["status"] == "processing"
        assert body["data"]["started_at"]
    finally:
        receiver.close()


def test_an_ending_whose_webhook_was_never_recorded_is_sent_after_a_restart(fast_settings):
    receiver = Receiver()
    try:
        with running_api(fast_settings) as api:
            request_id = embed(api, receiver.url)
            eventually(lambda: "job.completed" in receiver.events())
            # As if the process had stopped between persisting "done" and recording its webhook.
            api.engine.db.execute("DELETE FROM webhook_outbox WHERE event = 'job.completed'")
        receiver.requests.clear()
        with running_api(fast_settings):
            eventually(lambda: receiver.events() == ["job.completed"])
        assert json.loads(receiver.requests[0][1])["data"]["job_request_id"] == request_id
    finally:
        receiver.close()


# ---------------------------------------------------------------- the schedule and the breaker, on a manual clock
T0 = 1_700_000_000.0
DOCUMENTED_SCHEDULE = [0, 60, 120, 300, 600, 1800, 3600, 3 * 3600, 6 * 3600, 12 * 3600]
"""The webhooks page's Retry Policy: attempt 1 immediately, then 1 m, 2 m, 5 m, 10 m, 30 m, 1 h, 3 h, 6 h, 12 h."""


class ManualClock:
    """Time that moves only when the test moves it: the outbox's ``clock`` and its ``sleep``."""

    def __init__(self, now: float) -> None:
        self.now = now
        self.naps = 0
        self._sleepers: list[tuple[float, asyncio.Future]] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.naps += 1
        future = asyncio.get_running_loop().create_future()
        self._sleepers.append((self.now + seconds, future))
        try:
            await future
        finally:
            self._sleepers = [(at, f) for at, f in self._sleepers if f is not future]

    async def until_asleep(self, naps: int, timeout: float = 30.0) -> None:
        """Until the outbox has done what was due and gone back to sleep (a nap after the ``naps``-th)."""
        deadline = time.monotonic() + timeout
        while self.naps <= naps:
            assert time.monotonic() < deadline, "the outbox never went back to sleep"
            await asyncio.sleep(0.005)

    async def advance(self, seconds: float) -> None:
        naps = self.naps
        self.now += seconds
        woken = [f for at, f in self._sleepers if at <= self.now and not f.done()]
        for future in woken:
            future.set_result(None)
        if woken:
            await self.until_asleep(naps)


class Outbox:
    """A WebhookOutbox on its own database and a manual clock, fed job events as the engine feeds it."""

    def __init__(self, tmp_path, delays) -> None:
        self.clock = ManualClock(T0)
        self.db = Database(tmp_path / "outbox.db")
        self.jobs: dict[str, Job] = {}
        self.outbox = WebhookOutbox(
            self.db, self.jobs.get, lambda account_id: "whsec", lambda job: "https://results.example/x",
            delays=delays, clock=self.clock, sleep=self.clock.sleep,
        )

    async def __aenter__(self) -> "Outbox":
        self.outbox.start()
        await self.clock.until_asleep(0)
        return self

    async def __aexit__(self, *exc) -> None:
        await self.outbox.stop()
        self.db.close()

    async def jobs_done(self, url: str, count: int = 1) -> None:
        """``count`` jobs of one account end at once; returns when the outbox has acted on them."""
        naps = self.clock.naps
        for _ in range(count):
            job = Job(id=str(uuid.uuid4()), account_id="acct", task="txt2img", model="m", params={}, inputs={},
                      status="done", progress=100, price=0, charged=0, created_at=self.clock.now, webhook_url=url,
                      started_at=self.clock.now, finished_at=self.clock.now)
            self.jobs[job.id] = job
            await self.outbox.on_event(JobEvent(job.id, job.account_id, job.task, "done", "processing", 100.0))
        await self.clock.until_asleep(naps)

    def states(self) -> list[tuple[str, int]]:
        return [(r["state"], r["attempts"]) for r in self.db.query("SELECT state, attempts FROM webhook_outbox ORDER BY created_at")]


def sent_at(receiver: Receiver) -> list[int]:
    """When each attempt was sent, by its ``X-DryAPI-Timestamp`` (the outbox's clock)."""
    return [int(headers["X-DryAPI-Timestamp"]) for headers, _ in receiver.requests]


def test_the_retry_schedule_is_the_documented_one_as_configured():
    from engine.settings import Settings
    from engine.webhooks import RETRY_DELAYS

    assert list(Settings.model_fields["webhook_retry_delays"].default) == DOCUMENTED_SCHEDULE
    assert list(RETRY_DELAYS) == DOCUMENTED_SCHEDULE


async def test_each_retry_waits_exactly_the_documented_delay_and_the_tenth_failure_is_final(tmp_path):
    from engine.settings import Settings

    receiver = Receiver(fail=1000)
    try:
        async with Outbox(tmp_path, Settings.model_fields["webhook_retry_delays"].default) as box:
            await box.jobs_done(receiver.url)
            assert sent_at(receiver) == [T0]  # attempt 1: immediately
            expected = [T0]
            for delay in DOCUMENTED_SCHEDULE[1:]:
                await box.clock.advance(delay - 1)
                assert len(receiver.requests) == len(expected), f"attempt {len(expected) + 1} came early"
                await box.clock.advance(1)
                expected.append(expected[-1] + delay)
                assert sent_at(receiver) == expected
            assert box.states() == [("failed", 10)]
            await box.clock.advance(7 * 24 * 3600)  # nothing after the tenth attempt
            assert len(receiver.requests) == 10
            assert len({headers["X-DryAPI-Delivery-Id"] for headers, _ in receiver.requests}) == 1
    finally:
        receiver.close()


async def test_ten_consecutive_failures_pause_the_account_for_an_hour(tmp_path):
    receiver = Receiver(fail=11)
    try:
        async with Outbox(tmp_path, DOCUMENTED_SCHEDULE) as box:
            await box.jobs_done(receiver.url, 12)  # twelve deliveries due at once
            assert sent_at(receiver) == [T0] * 10  # the tenth failure stops the rest
            assert sorted(attempts for _, attempts in box.states()) == [0, 0] + [1] * 10
            # The first retries fall due at one minute, inside the pause: they wait it out too.
            await box.clock.advance(3599)
            assert len(receiver.requests) == 10
            # An hour after the tenth failure one probe goes; it fails (the 11th answer), so the pause restarts.
            await box.clock.advance(1)
            assert sent_at(receiver) == [T0] * 10 + [T0 + 3600]
            await box.clock.advance(3599)
            assert len(receiver.requests) == 11
            # Another hour on, the receiver answers: the probe succeeds and everything waiting goes out.
            await box.clock.advance(1)
            assert sent_at(receiver)[11:] == [T0 + 7200] * 12
            assert {state for state, _ in box.states()} == {"delivered"}
    finally:
        receiver.close()


async def test_a_success_between_failures_keeps_the_breaker_closed(tmp_path):
    receiver = Receiver(fail=9)
    try:
        async with Outbox(tmp_path, DOCUMENTED_SCHEDULE) as box:
            await box.jobs_done(receiver.url, 10)  # nine failures, then a 200: the count starts again
            receiver.fail = 1000
            await box.jobs_done(receiver.url, 9)
            assert len(receiver.requests) == 19  # nine failures since the success: not paused
            await box.jobs_done(receiver.url, 2)
            assert len(receiver.requests) == 20  # ten in a row now: the 21st waits
    finally:
        receiver.close()
