"""Webhooks against a real receiver on 127.0.0.1: signatures checked with the docs' Python recipe,
retries with the same delivery id, survival across a restart, the breaker and the SSRF refusal."""

from __future__ import annotations

import hashlib
import hmac
import http.server
import json
import threading
import time

import pytest

from engine.webhooks import BREAKER_FAILURES
from tests.conftest import eventually, running_api


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


def test_events_arrive_signed_with_the_documented_payloads(fast_settings):
    receiver = Receiver()
    try:
        with running_api(fast_settings) as api:
            request_id = embed(api, receiver.url)
            eventually(lambda: receiver.events() == ["job.processing", "job.completed"])
            for headers, body in receiver.requests:
                assert verify_webhook(body, headers["X-DryAPI-Signature"], headers["X-DryAPI-Timestamp"], secret_of(api))
                assert headers["User-Agent"] == "DryAPI-Webhook/1.0" and headers["Content-Type"] == "application/json"
                payload = json.loads(body)
                assert headers["X-DryAPI-Event"] == payload["event"] and headers["X-DryAPI-Delivery-Id"] == payload["delivery_id"]
                assert payload["data"]["job_request_id"] == request_id and payload["data"]["job_type"] == "txt2embedding"
            done = json.loads(receiver.requests[1][1])["data"]
            assert done["status"] == "done" and done["previous_status"] == "processing"
            assert done["result_url"].startswith("http") and done["processing_time_ms"] >= 0
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


def test_breaker_opens_after_ten_failures(fast_settings):
    receiver = Receiver(fail=1000)
    try:
        with running_api(fast_settings) as api:
            for _ in range(3):
                embed(api, receiver.url)
            eventually(lambda: len(receiver.requests) >= BREAKER_FAILURES, timeout=30)
            time.sleep(1.0)
            assert len(receiver.requests) == BREAKER_FAILURES  # then it stops knocking
            (breaker,) = api.engine.db.query("SELECT failures, opened_at FROM webhook_breakers")
            assert breaker["failures"] >= BREAKER_FAILURES and breaker["opened_at"]
    finally:
        receiver.close()


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
