"""Each job status change, published once after it is persisted, to whoever subscribed.

Subscribers (the WebSocket hub, the webhook outbox, tests) are coroutines functions; a failing
subscriber is logged and never affects the job or the other subscribers. With several API processes
(PostgreSQL) each process's bus also relays what it publishes to the others (engine/event_relay.py).
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Awaitable, Callable

if TYPE_CHECKING:
    from engine.jobs import Job

__all__ = ("EventBus", "JobEvent", "call_on")

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class JobEvent:
    job_id: str
    account_id: str
    task: str
    status: str
    previous_status: str | None
    progress: float
    preview: str | None = None
    result_file: str | None = None
    error_code: str | None = None
    error_message: str | None = None
    at: float = field(default_factory=time.time)
    webhook: bool = True
    """Whether the job has a webhook URL (True where unknown): the outbox reads no row for a job without one."""
    created_at: float | None = None
    started_at: float | None = None
    finished_at: float | None = None
    """The job's times as it stands (None where unknown): the metrics read no row for them."""

    @classmethod
    def of(cls, job: Job, previous: str | None) -> JobEvent:
        """The event of ``job`` as it now stands, coming from status ``previous``."""
        return cls(
            job_id=job.id,
            account_id=job.account_id,
            task=job.task,
            status=job.status,
            previous_status=previous,
            progress=job.progress,
            preview=job.preview,
            result_file=job.result_file,
            error_code=job.error_code,
            error_message=job.error_message,
            webhook=bool(job.webhook_url),
            created_at=job.created_at,
            started_at=job.started_at,
            finished_at=job.finished_at,
        )


Subscriber = Callable[[JobEvent], Awaitable[None]]


class EventBus:
    def __init__(self) -> None:
        self._subscribers: list[Subscriber] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._relay: Callable[[JobEvent], None] | None = None

    def relay_to(self, send: Callable[[JobEvent], None]) -> None:
        """Also hand every event published here to ``send``: the other API processes (engine/event_relay.py)."""
        self._relay = send

    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop

    def subscribe(self, subscriber: Subscriber) -> Callable[[], None]:
        self._subscribers.append(subscriber)
        return lambda: self._subscribers.remove(subscriber) if subscriber in self._subscribers else None

    def publish(self, event: JobEvent) -> None:
        """Safe from any thread: delivery always happens on the engine's event loop."""
        self.publish_all([event])

    def publish_all(self, events: list[JobEvent]) -> None:
        """``publish`` for each, in order, as one hand-over: a micro-batch's hundreds of events cost each
        subscriber one task on the loop, not one per event (a 256-job pass spent 15 ms of the loop on them)."""
        if not events or self._loop is None or self._loop.is_closed():
            return
        call_on(self._loop, self._dispatch, list(events))
        if self._relay is not None:
            for event in events:
                try:
                    self._relay(event)
                except Exception:  # the other processes miss this one; the job and this process do not
                    log.exception("relaying a job event failed")

    def deliver(self, event: JobEvent) -> None:
        """An event another process published: to this process's subscribers only. On the engine's loop."""
        if self._loop is not None and not self._loop.is_closed():
            self._dispatch([event])

    def _dispatch(self, events: list[JobEvent]) -> None:
        for subscriber in list(self._subscribers):
            task = asyncio.ensure_future(_each(subscriber, events))
            task.add_done_callback(_log_failure)


async def _each(subscriber: Subscriber, events: list[JobEvent]) -> None:
    for event in events:
        try:
            await subscriber(event)
        except Exception:  # one event's failure is logged, the rest are still delivered
            log.exception("event subscriber failed")


def call_on(loop: asyncio.AbstractEventLoop, callback: Callable[..., object], *args: object) -> None:
    """``callback(*args)`` on ``loop``: at once when called there, else handed over thread-safely (a worker's
    executor thread reports progress this way)."""
    try:
        running = asyncio.get_running_loop()
    except RuntimeError:
        running = None
    if running is loop:
        callback(*args)
    else:
        loop.call_soon_threadsafe(callback, *args)


def _log_failure(task: asyncio.Future) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("event subscriber failed", exc_info=task.exception())
