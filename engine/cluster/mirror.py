"""The stand-ins a device actor gives today's ``GpuWorker`` for the job store, the result store and the event bus.

The worker runs unchanged: its guarded transitions land on an in-memory copy of each job here, and every
transition that takes becomes a message (engine/cluster/messages.py) on that job's queue, which the actor
streams back to the API process. Result files are held in memory until the job's ``Finished`` carries them.
Progress is reported from the worker's executor thread, so messages are put on the queue through the loop.
"""

from __future__ import annotations

import asyncio
from dataclasses import replace
from typing import Any

from engine.cluster.messages import Failed, Finished, JobMessage, Progress, Started
from engine.events import call_on
from engine.jobs import ACTIVE, TERMINAL, Completion, Job

__all__ = ("JobMirror", "ResultCollector", "SilentBus")


class ResultCollector:
    """``ResultStore.write_all``/``write``/``remove`` for the worker: the files stay in memory, by job."""

    def __init__(self) -> None:
        self._files: dict[str, dict[str, bytes]] = {}

    def write_all(self, files) -> list[str | OSError]:
        return [self.write(job_id, filename, data) for job_id, filename, data in files]

    def write(self, job_id: str, filename: str, data: bytes) -> str:
        self._files.setdefault(job_id, {})[filename] = data
        return filename

    def remove(self, job_id: str) -> None:
        self._files.pop(job_id, None)

    def take(self, job_id: str) -> dict[str, bytes]:
        return self._files.pop(job_id, {})


class SilentBus:
    """The worker publishes each event; here the mirror's messages already carry them."""

    def publish(self, event: Any) -> None:
        pass

    def publish_all(self, events: list[Any]) -> None:
        pass


class JobMirror:
    """The ``JobStore`` calls ``GpuWorker`` makes, with the same guards, on the jobs this device was given."""

    def __init__(self, results: ResultCollector, loop: asyncio.AbstractEventLoop) -> None:
        self.results = results
        self._loop = loop
        self._jobs: dict[str, Job] = {}
        self._queues: dict[str, asyncio.Queue[JobMessage]] = {}

    def watch(self, job: Job) -> asyncio.Queue[JobMessage]:
        """Take ``job`` in; its messages arrive on the queue returned."""
        self._jobs[job.id] = job
        queue: asyncio.Queue[JobMessage] = asyncio.Queue()
        self._queues[job.id] = queue
        return queue

    def forget(self, job_id: str) -> None:
        self._jobs.pop(job_id, None)
        self._queues.pop(job_id, None)
        self.results.remove(job_id)

    def get(self, job_id: str) -> Job | None:
        job = self._jobs.get(job_id)
        return replace(job) if job is not None else None

    def start(self, job_id: str) -> bool:
        if not self._move(job_id, ("pending",), status="processing"):
            return False
        self._send(Started(job_id))
        return True

    def start_all(self, job_ids: list[str]) -> list[Job]:
        """``JobStore.start_all``: the jobs that were pending and now run."""
        return [self.get(job_id) for job_id in job_ids if self.start(job_id)]

    def resume(self, job_id: str) -> bool:
        if not self._move(job_id, ("processing",)):
            return False
        self._send(Started(job_id))
        return True

    def report_progress(self, job_id: str, progress: float, preview: str | None) -> bool:
        progress = max(0.0, min(99.99, float(progress)))
        changes: dict[str, Any] = {"status": "in_progress", "progress": progress}
        if preview is not None:
            changes["preview"] = preview
        if not self._move(job_id, ACTIVE, **changes):
            return False
        self._send(Progress(job_id, progress, preview))
        return True

    def complete(self, job_id: str, *, result, result_file, result_alt=None, meta=None, final_price=None) -> bool:
        if not self._move(job_id, ACTIVE, status="done", progress=100.0):
            return False
        files = self.results.take(job_id)
        self._send(Finished(job_id, files, result_file, dict(result_alt or {}), result, dict(meta or {}), final_price))
        return True

    def complete_all(self, completions: list[Completion]) -> list[tuple[Job, str]]:
        """``JobStore.complete_all``: each job that was active, now done, with the status it had."""
        ended = []
        for c in completions:
            job = self._jobs.get(c.job_id)
            previous = job.status if job is not None else ""
            if self.complete(c.job_id, result=c.result, result_file=c.result_file, result_alt=c.result_alt, meta=c.meta,
                             final_price=c.final_price):
                ended.append((self.get(c.job_id), previous))
        return ended

    def fail(self, job_id: str, code: str, message: str) -> bool:
        job = self._jobs.get(job_id)
        if job is None or job.status in TERMINAL:
            return False
        self._jobs[job_id] = replace(job, status="error", error_code=code, error_message=message)
        self.results.remove(job_id)
        self._send(Failed(job_id, code, message))
        return True

    def _move(self, job_id: str, from_states: tuple[str, ...], **changes: Any) -> bool:
        job = self._jobs.get(job_id)
        if job is None or job.status not in from_states:
            return False
        self._jobs[job_id] = replace(job, **changes)
        return True

    def _send(self, message: JobMessage) -> None:
        queue = self._queues.get(message.job_id)
        if queue is None:
            return
        call_on(self._loop, queue.put_nowait, message)
