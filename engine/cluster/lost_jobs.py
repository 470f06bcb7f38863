"""The attempts rule for a job whose actor or node was lost: the same rule a crashed server's jobs follow
(``JobStore.recover``). Re-queued while it has attempts left, else failed ``WORKER_TIMEOUT`` with the refund.
A job the lost actor never started is simply routed again; it used no attempt."""

from __future__ import annotations

import asyncio
import logging
from typing import Callable

from engine.events import EventBus, JobEvent
from engine.jobs import Job, JobStore

__all__ = ("LostJobs",)

log = logging.getLogger(__name__)


class LostJobs:
    def __init__(
        self, jobs: JobStore, events: EventBus, max_attempts: int, route: Callable[[Job], None], delay: float = 0.5
    ) -> None:
        """``route``: queues a pending job again (the engine's dispatch); ``delay``: before it does, so the
        reconciler can take a dead device out of the dispatcher's choices first."""
        self.jobs = jobs
        self.events = events
        self.max_attempts = max_attempts
        self.route = route
        self.delay = delay

    def handle(self, job_id: str, why: str) -> str:
        """What became of the job: ``requeued``, ``failed``, or ``ended`` (it had ended already)."""
        job = self.jobs.get(job_id)
        if job is None or job.finished:
            return "ended"
        if job.status != "pending":
            if job.attempts >= self.max_attempts:
                if self.jobs.fail(job_id, "WORKER_TIMEOUT", "The device running this job was lost, and it had been retried."):
                    self.events.publish(JobEvent.of(self.jobs.get(job_id), job.status))
                log.warning("job %s failed: its device was lost again (%s)", job_id, why)
                return "failed"
            if not self.jobs.requeue(job_id):
                return "ended"
        log.warning("job %s re-queued: its device was lost (%s)", job_id, why)
        asyncio.get_running_loop().call_later(self.delay, self._route, job_id)
        return "requeued"

    def _route(self, job_id: str) -> None:
        job = self.jobs.get(job_id)
        if job is not None and job.status == "pending":
            self.route(job)
