"""Signed webhooks with a durable outbox: job.processing, job.completed and job.failed.

A delivery row is written before the first attempt and keeps its delivery id for every retry, so
a receiver can drop duplicates; each attempt is signed afresh (``X-DryAPI-Signature`` = ``sha256=``
+ HMAC-SHA256 of ``timestamp.body`` with the account's webhook secret). Failed attempts are retried
on the documented schedule, across restarts; ten failures in a row pause an account's webhooks for
an hour. Time (``clock``, ``sleep``) is injectable, so tests can walk the schedule without waiting it.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import time
import uuid
from collections import defaultdict
from datetime import datetime, timezone
from typing import Awaitable, Callable, Sequence
from urllib.parse import urlsplit

from engine.database import Database
from engine.events import JobEvent
from engine.net_guard import addresses_of, is_internal

__all__ = ("RETRY_DELAYS", "WebhookOutbox", "check_webhook_url", "sign")

log = logging.getLogger(__name__)

RETRY_DELAYS: tuple[float, ...] = (0, 60, 120, 300, 600, 1800, 3600, 3 * 3600, 6 * 3600, 12 * 3600)
"""Seconds before each attempt: immediately, then 1 m, 2 m, 5 m, 10 m, 30 m, 1 h, 3 h, 6 h, 12 h."""
BREAKER_FAILURES = 10
"""Consecutive failed attempts, across an account's deliveries, that pause its webhooks."""
BREAKER_COOLDOWN = 3600.0
"""Seconds the pause lasts; the first attempt after it is a probe (a failure pauses again)."""
TIMEOUT = 10.0
EVENTS = {"processing": "job.processing", "done": "job.completed", "error": "job.failed"}

_SCHEMA = """
CREATE TABLE IF NOT EXISTS webhook_outbox (
    delivery_id TEXT PRIMARY KEY,
    account_id TEXT NOT NULL,
    job_id TEXT NOT NULL,
    event TEXT NOT NULL,
    url TEXT NOT NULL,
    body TEXT NOT NULL,
    state TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at REAL NOT NULL,
    last_error TEXT,
    created_at REAL NOT NULL,
    UNIQUE (job_id, event, url)
);
CREATE INDEX IF NOT EXISTS webhook_due ON webhook_outbox(state, next_attempt_at);
CREATE TABLE IF NOT EXISTS webhook_breakers (
    account_id TEXT PRIMARY KEY,
    failures INTEGER NOT NULL DEFAULT 0,
    opened_at REAL
);
"""


class WebhookRefused(ValueError):
    """The URL may not receive webhooks; the message says why."""


def sign(secret: str, timestamp: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()


def check_webhook_url(url: str, allow_http_loopback: bool, allowed_hosts: Sequence[str] = ()) -> None:
    """HTTPS only (plain HTTP to this machine when allowed); never an address on a private network,
    except the hosts the owner named."""
    parts = urlsplit(url)
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise WebhookRefused("The webhook URL must be an absolute https URL.")
    if parts.hostname.lower() in {host.lower() for host in allowed_hosts}:
        return
    plain = parts.scheme == "http"
    if plain and not allow_http_loopback:
        raise WebhookRefused("The webhook URL must use https.")
    try:
        addresses = addresses_of(parts.hostname, parts.port or 443)
    except (OSError, ValueError) as exc:
        if plain:
            raise WebhookRefused("The webhook URL must use https.") from exc
        raise WebhookRefused(f"The webhook host {parts.hostname} cannot be resolved.") from exc
    loopback = all(address.is_loopback for address in addresses)
    if loopback and not allow_http_loopback:
        raise WebhookRefused("The webhook URL resolves to this machine, which only the owner's keys may call.")
    if plain and not loopback:
        raise WebhookRefused("The webhook URL must use https (plain http only reaches this machine).")
    if not loopback and is_internal(addresses):
        raise WebhookRefused("The webhook URL resolves to a private network address.")


def _iso(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class WebhookOutbox:
    def __init__(
        self,
        db: Database,
        job_of,
        secret_of,
        result_url_of,
        *,
        delays: Sequence[float] = RETRY_DELAYS,
        loopback_allowed: Callable[[str], bool] = lambda account_id: True,
        allowed_hosts: Sequence[str] = (),
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.db = db
        self.job_of = job_of
        self.secret_of = secret_of
        self.result_url_of = result_url_of
        self.delays = tuple(delays)
        self.loopback_allowed = loopback_allowed
        """Whether an account's webhooks may reach this machine; asked again at every delivery, since a
        name that resolved elsewhere at submit may resolve here now."""
        self.allowed_hosts = tuple(allowed_hosts)
        self.clock = clock
        """Seconds since the epoch: due times, the breaker, ``timestamp`` and ``X-DryAPI-Timestamp``."""
        self.sleep = sleep
        """Waits between looks at the outbox (a new delivery wakes it sooner)."""
        self._wake = asyncio.Event()
        self._task: asyncio.Task | None = None
        for statement in filter(str.strip, _SCHEMA.split(";")):
            db.execute(statement)

    # ---------------------------------------------------------------- recording
    async def on_event(self, event: JobEvent) -> None:
        name = EVENTS.get(event.status)
        if name is None or not event.webhook:  # progress events, jobs without a webhook: no database read for them
            return
        job = self.job_of(event.job_id)
        if job is None or not job.webhook_url:
            return
        now = self.clock()
        data = {"job_request_id": job.id, "status": event.status, "previous_status": event.previous_status or "pending", "job_type": job.task}
        if event.status == "processing":
            data["started_at"] = _iso(job.started_at or now)
        elif event.status == "done":
            data.update(
                completed_at=_iso(job.finished_at or now),
                result_url=self.result_url_of(job),
                processing_time_ms=int(1000 * ((job.finished_at or now) - (job.started_at or job.created_at))),
            )
        else:
            data.update(failed_at=_iso(job.finished_at or now), error_code=job.error_code, error_message=job.error_message)
        delivery_id = str(uuid.uuid4())
        body = json.dumps({"event": name, "delivery_id": delivery_id, "timestamp": _iso(now), "data": data}, separators=(",", ":"))
        # One delivery per (job, event, url), however many processes saw the event (every API process
        # hears every job's events on PostgreSQL): the first recorded wins.
        self.db.execute(
            "INSERT INTO webhook_outbox (delivery_id, account_id, job_id, event, url, body, state, next_attempt_at,"
            " created_at) VALUES (?,?,?,?,?,?,'pending',?,?) ON CONFLICT DO NOTHING",
            (delivery_id, job.account_id, job.id, name, job.webhook_url, body, now + self.delays[0], now),
        )
        self._wake.set()

    def unrecorded_endings(self, since: float) -> list[str]:
        """Jobs that ended (since ``since``) with a webhook but no completed/failed delivery recorded:
        the process stopped between persisting the ending and recording its webhook."""
        rows = self.db.query(
            "SELECT id FROM jobs WHERE webhook_url IS NOT NULL AND status IN ('done', 'error') AND finished_at >= ?"
            " AND id NOT IN (SELECT job_id FROM webhook_outbox WHERE event IN ('job.completed', 'job.failed'))",
            (since,),
        )
        return [row["id"] for row in rows]

    def unrecorded_starts(self, since: float) -> list[str]:
        """Jobs that started and ended (since ``since``) with a webhook but no processing delivery
        recorded: the process stopped between persisting the start and recording its webhook. (A job
        the crash left running is re-queued and records its start again when it runs.)"""
        rows = self.db.query(
            "SELECT id FROM jobs WHERE webhook_url IS NOT NULL AND status IN ('done', 'error') AND started_at >= ?"
            " AND id NOT IN (SELECT job_id FROM webhook_outbox WHERE event = 'job.processing')",
            (since,),
        )
        return [row["id"] for row in rows]

    # ---------------------------------------------------------------- delivering
    def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name="drylocal-webhooks")

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def _loop(self) -> None:
        import httpx

        async with httpx.AsyncClient(timeout=TIMEOUT, follow_redirects=False) as client:
            while True:
                due = self.db.query(
                    "SELECT * FROM webhook_outbox WHERE state = 'pending' AND next_attempt_at <= ? ORDER BY next_attempt_at LIMIT 20",
                    (self.clock(),),
                )
                if due:
                    # Accounts in parallel, each account's deliveries one after another: every attempt
                    # sees the failures before it, so the breaker stops at exactly the tenth.
                    by_account = defaultdict(list)
                    for row in due:
                        by_account[row["account_id"]].append(row)
                    await asyncio.gather(*(self._attempt_in_turn(client, rows) for rows in by_account.values()))
                    continue
                self._wake.clear()
                upcoming = self.db.query_one("SELECT MIN(next_attempt_at) AS at FROM webhook_outbox WHERE state = 'pending'")
                wait = 5.0 if upcoming is None or upcoming["at"] is None else max(0.01, min(5.0, upcoming["at"] - self.clock()))
                await self._nap(wait)

    async def _nap(self, seconds: float) -> None:
        """Until ``seconds`` pass or a new delivery is recorded, whichever comes first."""
        woken = asyncio.ensure_future(self._wake.wait())
        napping = asyncio.ensure_future(self.sleep(seconds))
        try:
            await asyncio.wait((woken, napping), return_when=asyncio.FIRST_COMPLETED)
        finally:
            woken.cancel()
            napping.cancel()

    async def _attempt_in_turn(self, client, rows) -> None:
        for row in rows:
            await self._attempt(client, row)

    async def _attempt(self, client, row) -> None:
        breaker = self.db.query_one("SELECT * FROM webhook_breakers WHERE account_id = ?", (row["account_id"],))
        now = self.clock()
        if breaker and breaker["failures"] >= BREAKER_FAILURES and now < (breaker["opened_at"] or 0) + BREAKER_COOLDOWN:
            # The receiver has been failing: wait out the cool-down instead of hammering it.
            self.db.execute(
                "UPDATE webhook_outbox SET next_attempt_at = ? WHERE delivery_id = ?",
                (breaker["opened_at"] + BREAKER_COOLDOWN, row["delivery_id"]),
            )
            return
        error = await self._send(client, row)
        attempts = row["attempts"] + 1
        if error is None:
            self.db.execute(
                "UPDATE webhook_outbox SET state = 'delivered', attempts = ?, last_error = NULL WHERE delivery_id = ?",
                (attempts, row["delivery_id"]),
            )
            self.db.execute(
                "INSERT INTO webhook_breakers (account_id, failures, opened_at) VALUES (?, 0, NULL)"
                " ON CONFLICT(account_id) DO UPDATE SET failures = 0, opened_at = NULL",
                (row["account_id"],),
            )
            return
        log.info("webhook %s to %s failed (attempt %d): %s", row["delivery_id"], row["url"], attempts, error)
        final = attempts >= len(self.delays) or error.startswith("refused:")
        self.db.execute(
            "UPDATE webhook_outbox SET state = ?, attempts = ?, last_error = ?, next_attempt_at = ? WHERE delivery_id = ?",
            ("failed" if final else "pending", attempts, error, now + (0 if final else self.delays[attempts]), row["delivery_id"]),
        )
        self.db.execute(
            "INSERT INTO webhook_breakers (account_id, failures, opened_at) VALUES (?, 1, NULL)"
            " ON CONFLICT(account_id) DO UPDATE SET failures = webhook_breakers.failures + 1,"
            " opened_at = CASE WHEN webhook_breakers.failures + 1 >= ? THEN ? ELSE webhook_breakers.opened_at END",
            (row["account_id"], BREAKER_FAILURES, now),
        )

    async def _send(self, client, row) -> str | None:
        try:
            loopback = self.loopback_allowed(row["account_id"])
            await asyncio.to_thread(check_webhook_url, row["url"], loopback, self.allowed_hosts)
        except WebhookRefused as exc:
            return f"refused: {exc}"
        body = row["body"].encode()
        timestamp = str(int(self.clock()))
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "DryAPI-Webhook/1.0",
            "X-DryAPI-Event": row["event"],
            "X-DryAPI-Delivery-Id": row["delivery_id"],
            "X-DryAPI-Timestamp": timestamp,
            "X-DryAPI-Signature": sign(self.secret_of(row["account_id"]), timestamp, body),
        }
        try:
            response = await client.post(row["url"], content=body, headers=headers)
        except Exception as exc:  # timeouts, refused connections, TLS errors: all a failed attempt
            return f"{type(exc).__name__}: {exc}"
        if 200 <= response.status_code < 300:
            return None
        return f"HTTP {response.status_code}"  # redirects included: a webhook must answer where it was sent
