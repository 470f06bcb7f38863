"""The Ray cluster's devices as one Engine's workers: one detached, named actor per device, found on every node
that offers ``drylocal_device`` resources, and a reconciler that keeps the job rows true.

Actors: ``num_gpus=1`` on a GPU node, held to their node, restarted by Ray when their process dies
(``max_restarts=-1``) but never re-running a call (``max_task_retries=0``): drylocal alone re-queues jobs, through
its attempts rule (engine/cluster/lost_jobs.py), so attempts, refunds and webhooks stay exact.
The reconciler, every ``interval`` seconds: drops the devices of dead nodes (their jobs go through the rule),
asks every other actor how it stands, makes actors for nodes that joined, and sends through the rule any
running job placed on one of this pool's actors that no stream follows any more (what an exception missed),
and deletes the placements of jobs that ended.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Callable

import ray
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from engine.cluster.actor import DeviceActor
from engine.cluster.lost_jobs import LostJobs
from engine.cluster.placements import JobPlacements
from engine.cluster.ray_node import DEVICE_RESOURCE
from engine.cluster.remote_worker import RemoteWorker
from engine.devices import DeviceBudget
from engine.settings import Settings
from model_registry import LoadedModel, ModelSpec
from model_registry.placement import Placement

__all__ = ("ClusterPool",)

log = logging.getLogger(__name__)

STARTUP_TIMEOUT = 120.0
"""Seconds the devices found at start-up may take to come up (an actor process imports torch)."""


class ClusterPool:
    def __init__(
        self,
        *,
        actor_settings: Settings | None = None,
        budget: DeviceBudget | None = None,
        load_fn: Callable[[ModelSpec, str, Placement], LoadedModel] | None = None,
        interval: float = 5.0,
        grace: float = 10.0,
        namespace: str = "drylocal",
    ) -> None:
        """``actor_settings``/``budget``/``load_fn``: handed to every actor, to simulate devices on one machine
        (tests, benchmarks); by default each node uses its own settings and the device Ray gives the actor.
        ``grace``: how long a placed job may go unfollowed before the reconciler counts it lost."""
        self.actor_settings = actor_settings
        self.budget = budget
        self.load_fn = load_fn
        self.interval = interval
        self.grace = grace
        self.namespace = namespace
        self.engine = None
        self.placements: JobPlacements | None = None
        self.lost: LostJobs | None = None
        self._actors: dict[str, object] = {}
        """Every actor this pool made, by name, lost ones included."""
        self._reconciler: asyncio.Task | None = None

    # ---------------------------------------------------------------- the Engine's ``workers`` seam
    def workers_for(self, engine) -> list[RemoteWorker]:
        """One RemoteWorker per device of the cluster as it stands (blocks until their actors answer)."""
        self.engine = engine
        self.placements = JobPlacements(engine.db)
        self.lost = LostJobs(engine.jobs, engine.events, engine.settings.max_attempts, engine._queue)
        actors = self._new_actors()
        states = ray.get([actor.state.remote() for actor in actors], timeout=STARTUP_TIMEOUT)
        return [self._worker(actor, state) for actor, state in zip(actors, states)]

    @property
    def workers(self) -> list[RemoteWorker]:
        return [w for w in self.engine.workers if isinstance(w, RemoteWorker)] if self.engine else []

    def start(self) -> None:
        """Start reconciling (the workers call it as they start; once is enough)."""
        if self._reconciler is None:
            self._reconciler = asyncio.create_task(self._reconcile_periodically(), name="drylocal-reconciler")

    async def stop(self) -> None:
        """Stop reconciling and end this pool's actors (what they hold on their devices is freed)."""
        if self._reconciler is not None:
            self._reconciler.cancel()
            await asyncio.gather(self._reconciler, return_exceptions=True)
            self._reconciler = None
        for worker in self.workers:
            await worker.let_go()
        for actor in self._actors.values():
            try:
                ray.kill(actor, no_restart=True)
            except Exception:  # already gone with its node
                pass
        self._actors.clear()

    # ---------------------------------------------------------------- reconciling
    async def reconcile(self) -> None:
        """One pass (see the module docstring)."""
        alive = {node["NodeID"] for node in await asyncio.to_thread(ray.nodes) if node["Alive"]}
        for worker in self.workers:
            if worker.state.node_id not in alive:
                self._drop(worker, "its node was lost")
            else:
                await worker.check()
        for actor in await asyncio.to_thread(self._new_actors):
            try:
                state = await asyncio.wait_for(_awaited(actor.state.remote()), STARTUP_TIMEOUT)
            except (ray.exceptions.RayError, asyncio.TimeoutError):
                log.warning("a new device did not come up; trying again at the next pass")
                continue
            worker = self._worker(actor, state)
            self.engine.workers.append(worker)
            log.info("device %s joined (%s, %d bytes)", state.actor, state.budget.device, state.budget.budget_bytes)
            self.engine.dispatcher.retry()
        followed = {job_id for worker in self.workers for job_id in worker.driving}
        for job_id, actor in self.placements.running(placed_before=time.time() - self.grace):
            if actor in self._actors and job_id not in followed:
                self.lost.handle(job_id, f"no stream from {actor} follows it")
        await asyncio.to_thread(self.placements.sweep)

    async def _reconcile_periodically(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            try:
                await self.reconcile()
            except Exception:  # the next pass tries again
                log.exception("reconciling the cluster failed")

    def _drop(self, worker: RemoteWorker, why: str) -> None:
        log.warning("device %s dropped: %s", worker.name, why)
        self.engine.workers.remove(worker)
        worker.abandon(why)
        try:
            ray.kill(worker.actor, no_restart=True)  # else Ray keeps it RESTARTING for a node that is gone
        except Exception:
            pass

    # ---------------------------------------------------------------- actors
    def _new_actors(self) -> list:
        """An actor for each device of each live node that has none from this pool yet."""
        made = []
        for node in ray.nodes():
            if not node["Alive"]:
                continue
            resources = node["Resources"]
            devices = int(resources.get(DEVICE_RESOURCE, 0))
            gpus = int(resources.get("GPU", 0))
            for index in range(devices):
                name = f"drylocal-device-{node['NodeID'][:12]}-{index}"
                if name in self._actors:
                    continue
                actor = ray.remote(DeviceActor).options(
                    name=name,
                    namespace=self.namespace,
                    lifetime="detached",
                    get_if_exists=True,
                    num_cpus=0,
                    num_gpus=1 if gpus >= devices else 0,
                    resources={DEVICE_RESOURCE: 1},
                    max_restarts=-1,
                    max_task_retries=0,
                    scheduling_strategy=NodeAffinitySchedulingStrategy(node["NodeID"], soft=False),
                ).remote(name, self.actor_settings, self.budget, self.load_fn, devices)
                self._actors[name] = actor
                made.append(actor)
        return made

    def _worker(self, actor, state) -> RemoteWorker:
        engine = self.engine
        return RemoteWorker(
            actor, state, registry=engine.registry, jobs=engine.jobs, results=engine.results, events=engine.events,
            placements=self.placements, lost=self.lost, on_step=engine._device_changed, on_start=self.start, on_stop=self.stop,
        )


async def _awaited(ref):
    return await ref
