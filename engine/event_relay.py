"""Job events between API processes on PostgreSQL: NOTIFY out, LISTEN in, into each process's ``EventBus``.

Every process hears every job's status changes, so a Pusher socket on any process sees a job run by the
leader, and a long-polling ``request-status`` on a follower wakes when the job ends. A notification is sent
after the change is committed (the bus's publish-after-persist rule) and PostgreSQL delivers it only to
sessions listening by then, in the order sent. Its payload stays under PostgreSQL's 8000 bytes: the event
without its preview (a JPEG, re-read from the job row by the listener) and, if still too long, without its
error message (re-read too). Submits on a follower announce the job on a second channel, so the leader's
dispatcher queues it at once.

An event published here is delivered to this process's subscribers at once, as on one box; the
listener skips the notifications this process sent itself.
"""

from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import asdict
from typing import Callable

import psycopg

from engine.events import EventBus, JobEvent
from engine.postgres import PostgresDatabase

__all__ = ("EVENTS_CHANNEL", "NEW_JOBS_CHANNEL", "EventRelay", "decode", "encode")

log = logging.getLogger(__name__)

EVENTS_CHANNEL = "drylocal_job_events"
NEW_JOBS_CHANNEL = "drylocal_job_new"
_PAYLOAD_LIMIT = 7900
"""Bytes; PostgreSQL refuses a NOTIFY payload of 8000 or more."""
_RECONNECT_SECONDS = 1.0


def encode(event: JobEvent) -> str:
    """The event as a notification payload, under the size limit (what it leaves out, it flags)."""
    data = asdict(event)
    data["preview"] = None
    data["reread_preview"] = event.preview is not None
    text = json.dumps(data, separators=(",", ":"))
    if len(text.encode()) > _PAYLOAD_LIMIT:
        data["error_message"] = None
        data["reread_error"] = True
        text = json.dumps(data, separators=(",", ":"))
    return text


def decode(payload: str, read_job_fields: Callable[[str], dict[str, str | None]]) -> JobEvent:
    """The event a payload carries; what was left out is read back from the job's row."""
    data = json.loads(payload)
    reread_preview = data.pop("reread_preview", False)
    reread_error = data.pop("reread_error", False)
    if reread_preview or reread_error:
        stored = read_job_fields(data["job_id"])
        if reread_preview:
            data["preview"] = stored.get("preview")
        if reread_error:
            data["error_message"] = stored.get("error_message")
    return JobEvent(**data)


class EventRelay:
    """This process's NOTIFY sender and LISTEN loop (its own connection, so a long wait blocks no query)."""

    def __init__(self, db: PostgresDatabase, bus: EventBus, on_job_announced: Callable[[str], None]) -> None:
        self.db = db
        self.bus = bus
        self.on_job_announced = on_job_announced
        """Called with a job id some process submitted (on the leader, it queues the job)."""
        self._task: asyncio.Task | None = None
        self._listening = asyncio.Event()

    async def start(self) -> None:
        """Listening before this returns, so nothing sent after start-up is missed."""
        self._task = asyncio.create_task(self._listen_forever(), name="drylocal-event-relay")
        await self._listening.wait()

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    def send(self, event: JobEvent) -> None:
        """To every other process (``EventBus.relay_to``)."""
        self.db.notify(EVENTS_CHANNEL, encode(event))

    def announce(self, job_id: str) -> None:
        """A new pending job, for the leader's dispatcher."""
        self.db.notify(NEW_JOBS_CHANNEL, job_id)

    async def _listen_forever(self) -> None:
        while True:
            try:
                await self._listen()
            except asyncio.CancelledError:
                raise
            except Exception:  # a dropped connection: events meanwhile are lost, the job rows keep the truth
                log.warning("event relay lost its PostgreSQL connection; reconnecting", exc_info=True)
                await asyncio.sleep(_RECONNECT_SECONDS)

    async def _listen(self) -> None:
        conn = await psycopg.AsyncConnection.connect(self.db.url, autocommit=True)
        async with conn:
            await conn.execute(f"LISTEN {EVENTS_CHANNEL}")
            await conn.execute(f"LISTEN {NEW_JOBS_CHANNEL}")
            self._listening.set()
            async for notice in conn.notifies():
                if notice.channel == NEW_JOBS_CHANNEL:
                    self.on_job_announced(notice.payload)
                elif notice.pid != self.db.backend_pid:  # this process delivered its own events already
                    try:
                        event = await asyncio.to_thread(decode, notice.payload, self._job_fields)
                    except Exception:  # one bad payload must not stop the others
                        log.exception("unreadable job event %.200s", notice.payload)
                        continue
                    self.bus.deliver(event)

    def _job_fields(self, job_id: str) -> dict[str, str | None]:
        row = self.db.query_one("SELECT preview, error_message FROM jobs WHERE id = ?", (job_id,))
        return {"preview": row["preview"], "error_message": row["error_message"]} if row else {}
