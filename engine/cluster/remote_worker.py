"""The API process's side of one device actor: what the dispatcher and ``Engine.serving`` ask of a ``GpuWorker``
(``view``, ``enqueue``, ``start``/``stop``, the stats), with each job's messages applied through the guarded
``JobStore`` transitions, the result store and the event bus, in the order the actor sent them.

The device is known by its last ``DeviceState`` (fetched after each job ends) together with the jobs sent to it
since (engine/cluster/residency.py); ``view`` estimates a job's need from the model's placement on that budget
(the actor's own plan decides for real, as on one machine).
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Awaitable, Callable

import ray

from engine.cluster.lost_jobs import LostJobs
from engine.cluster.messages import DeviceState, Failed, Finished, JobMessage, Progress, Started
from engine.cluster.placements import JobPlacements
from engine.cluster.residency import projected_view
from engine.devices import DeviceBudget
from engine.dispatcher import DeviceView
from engine.events import EventBus, JobEvent
from engine.jobs import Job, JobStore
from engine.results import ResultStore
from engine.worker import ModelStats
from model_registry import ModelRegistry
from model_registry.footprint import footprint, read_layout
from model_registry.placement import Placement

__all__ = ("RemoteWorker",)

log = logging.getLogger(__name__)

STATE_TIMEOUT = 5.0
"""Seconds a device actor may take to answer ``state``/``ping`` before it counts as unreachable."""


class RemoteWorker:
    isolated = None
    """Inference runs in the actor's process, never in an inference process of the API's."""

    def __init__(
        self,
        actor,
        state: DeviceState,
        *,
        registry: ModelRegistry,
        jobs: JobStore,
        results: ResultStore,
        events: EventBus,
        placements: JobPlacements,
        lost: LostJobs,
        on_step: Callable[[], None],
        on_start: Callable[[], None] = lambda: None,
        on_stop: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self.actor = actor
        self.state = state
        self.name = state.actor
        self.registry = registry
        self.jobs = jobs
        self.results = results
        self.events = events
        self.placements = placements
        self.lost = lost
        self.on_step = on_step
        self.on_start = on_start
        self.on_stop = on_stop
        self.reachable = True
        """False after a call failed, until a ping answers: the dispatcher passes over it meanwhile."""
        self._driving: dict[str, asyncio.Task] = {}
        self._in_flight: dict[str, str] = {}
        """Job id -> model of each job sent here whose end the last ``state`` does not show yet."""
        self._placed: dict[str, Placement] = {}
        self._layout = read_layout()

    # ---------------------------------------------------------------- what the engine reads
    @property
    def budget(self) -> DeviceBudget:
        return self.state.budget

    @property
    def driving(self) -> set[str]:
        """The jobs sent to this actor whose stream is still open."""
        return set(self._driving)

    @property
    def reported(self) -> bool:
        """The last state came after every job sent here ended (its loads and residents are current)."""
        return not self._in_flight

    @property
    def queue_depth(self) -> int:
        return len(self._driving)

    def resident(self) -> list[ModelStats]:
        return self.state.resident

    @property
    def measured(self) -> dict[str, int]:
        return self.state.measured

    @property
    def load_seconds(self) -> dict[str, float]:
        return self.state.load_seconds

    @property
    def loads(self) -> int:
        return self.state.loads

    @property
    def evictions(self) -> int:
        return self.state.evictions

    @property
    def unparks(self) -> int:
        return self.state.unparks

    def placement(self, slug: str) -> Placement:
        spec = self.registry.get(slug)
        if spec.slug not in self._placed:
            self._placed[spec.slug] = self.budget.place(footprint(spec, self._layout))
        return self._placed[spec.slug]

    def view(self, job: Job) -> DeviceView:
        """This device for engine/dispatcher.py: its last state with the jobs sent to it since."""
        try:
            placement = self.placement(job.model)
        except Exception:  # an unknown model: the actor's plan fails it with the reason
            return DeviceView(self.budget.budget_bytes, 0, 0, False, 0, self.queue_depth, refused=not self.reachable)
        refused = not self.reachable or (self.budget.device.startswith("cuda") and placement.kind == "too_big")
        return projected_view(
            job.model, self.state.resident, set(self._in_flight.values()), self.budget.budget_bytes, self._size_of,
            placement.working_bytes, self.queue_depth, refused,
        )

    def _size_of(self, slug: str) -> int:
        """What ``slug`` holds loaded here: measured once it was, else its placement's estimate."""
        try:
            return self.measured.get(slug, self.placement(slug).gpu_bytes)
        except Exception:
            return 0

    # ---------------------------------------------------------------- lifecycle
    def enqueue(self, job: Job, *, started: bool = False) -> None:
        """Record the placement on the job's side of the database, then stream the job through the actor."""
        self.placements.record(job.id, self.name)
        self._in_flight[job.id] = job.model
        self._driving[job.id] = asyncio.create_task(self._drive(job, started), name=f"drylocal-remote-{job.id}")

    def start(self) -> None:
        self.on_start()

    async def stop(self) -> None:
        """Stop following the jobs in flight, then the pool (its actors end)."""
        await self.let_go()
        if self.on_stop is not None:
            await self.on_stop()

    async def let_go(self) -> None:
        """Stop following the jobs in flight: they stay running in the database, and the next start's
        ``recover`` re-queues them."""
        tasks = list(self._driving.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._in_flight.clear()

    async def check(self) -> bool:
        """Ask the actor how it stands; False where it does not answer in time."""
        try:
            self.state = await asyncio.wait_for(_awaited(self.actor.state.remote()), STATE_TIMEOUT)
        except (ray.exceptions.RayError, asyncio.TimeoutError) as exc:
            log.warning("device %s did not answer: %s", self.name, type(exc).__name__)
            self.reachable = False
            return False
        self.reachable = True
        return True

    def abandon(self, why: str) -> None:
        """The actor or its node is gone: stop following its jobs and send each through the attempts rule."""
        self.reachable = False
        for job_id, task in list(self._driving.items()):
            task.cancel()
            self._driving.pop(job_id, None)
            self._in_flight.pop(job_id, None)
            self.lost.handle(job_id, why)

    # ---------------------------------------------------------------- one job
    async def _drive(self, job: Job, started: bool) -> None:
        try:
            blobs = await asyncio.to_thread(_read_inputs, job.inputs)
            stream = self.actor.run.options(num_returns="streaming").remote(job, blobs, started)
            async for ref in stream:
                await self._apply(await ref, started)
        except asyncio.CancelledError:
            raise
        except ray.exceptions.RayError as exc:  # the actor died, its node went, or an object was lost
            self.reachable = False
            self._driving.pop(job.id, None)
            self.lost.handle(job.id, f"{type(exc).__name__} on {self.name}")
        except Exception:
            log.exception("following job %s on %s failed", job.id, self.name)
            self._driving.pop(job.id, None)
            self.lost.handle(job.id, f"following it on {self.name} failed")
        finally:
            self._driving.pop(job.id, None)
        # The job's model stays in this view until the state shows it resident: its client may submit the next
        # job for it before that state arrives, and it should come here.
        await self.check()
        if job.id not in self._driving:  # unless the job was re-queued and sent here again meanwhile
            self._in_flight.pop(job.id, None)
        self.on_step()

    async def _apply(self, message: JobMessage, started: bool) -> None:
        job_id = message.job_id
        previous = self.jobs.get(job_id)
        if previous is None:
            return
        if isinstance(message, Started):
            if started:
                self.jobs.resume(job_id)
            elif self.jobs.start(job_id):
                self._publish(job_id, previous.status)
        elif isinstance(message, Progress):
            if self.jobs.report_progress(job_id, message.progress, message.preview):
                self._publish(job_id, previous.status)
        elif isinstance(message, Finished):
            await self._complete(message, previous.status)
        elif isinstance(message, Failed):
            if self.jobs.fail(job_id, message.code, message.message):
                self._publish(job_id, previous.status)

    async def _complete(self, message: Finished, previous: str) -> None:
        job_id = message.job_id
        try:
            stored = {
                name: await asyncio.to_thread(self.results.write, job_id, name, data) for name, data in message.files.items()
            }
        except OSError as exc:
            self.results.remove(job_id)
            if self.jobs.fail(job_id, "PROCESSING_ERROR", f"The result could not be stored: {exc.strerror or exc}"):
                self._publish(job_id, previous)
            return
        if self.jobs.complete(
            job_id,
            result=message.result,
            result_file=stored.get(message.result_file),
            result_alt={fmt: stored[name] for fmt, name in message.result_alt.items()},
            meta=message.meta,
            final_price=message.final_price,
        ):
            self._publish(job_id, previous)

    def _publish(self, job_id: str, previous: str | None) -> None:
        self.events.publish(JobEvent.of(self.jobs.get(job_id), previous))


async def _awaited(ref):
    return await ref


def _read_inputs(inputs: dict) -> dict[str, bytes]:
    """Each input file's bytes by its path here: they travel with the call (nodes share no filesystem)."""
    paths = [p for value in inputs.values() for p in (value if isinstance(value, list) else [value])]
    return {str(p): Path(p).read_bytes() for p in paths}
