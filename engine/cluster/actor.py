"""One device of one node as a Ray actor: today's ``GpuWorker``, unchanged, on a job mirror (engine/cluster/mirror.py).

The API process calls ``run`` once per job; it streams the job's messages (engine/cluster/messages.py) back
until the job ends. Inputs arrive as bytes with the call and are written to a folder of this node's own, so
nodes need no shared filesystem; model weights must be on each node (``drylocal pull`` there), found through the
node's own ``DRYLOCAL_HOME`` unless the API process passes its settings (tests, simulated devices on one box).
"""

from __future__ import annotations

import asyncio
import shutil
import tempfile
from dataclasses import replace
from pathlib import Path
from typing import AsyncIterator, Callable

import ray

from engine.cluster.messages import DeviceState, Failed, Finished, JobMessage
from engine.cluster.mirror import JobMirror, ResultCollector, SilentBus
from engine.cluster.node_budget import node_device_budget
from engine.devices import DeviceBudget
from engine.jobs import Job
from engine.settings import Settings
from engine.worker import GpuWorker
from model_registry import LoadedModel, ModelRegistry, ModelSpec, WeightsLocator
from model_registry.placement import Placement

__all__ = ("DeviceActor",)


class DeviceActor:
    """Made with ``ray.remote(DeviceActor).options(...)`` by engine/cluster/pool.py: one per device."""

    def __init__(
        self,
        name: str,
        settings: Settings | None = None,
        budget: DeviceBudget | None = None,
        load_fn: Callable[[ModelSpec, str, Placement], LoadedModel] | None = None,
        devices_on_node: int = 1,
    ) -> None:
        """``settings``/``budget``: given by the API process to simulate devices; by default this node's own
        settings (its environment and config.toml) and the device Ray assigned the actor, with its share of the
        node's host RAM (``devices_on_node``: how many actors share it)."""
        self.name = name
        self._settings = settings
        self._budget = budget
        self._load_fn = load_fn
        self._devices_on_node = devices_on_node
        self._inputs = Path(tempfile.mkdtemp(prefix="drylocal-inputs-"))
        self._worker: GpuWorker | None = None
        self._mirror: JobMirror | None = None

    def _started_worker(self) -> GpuWorker:
        """The worker, made on the first call: it needs the actor's event loop, which ``__init__`` runs outside."""
        if self._worker is None:
            settings = self._settings or Settings.load()
            budget = self._budget or node_device_budget(settings, bool(ray.get_gpu_ids()), self._devices_on_node)
            registry = ModelRegistry.from_files(WeightsLocator(settings.models_dir), settings.config_file)
            results = ResultCollector()
            self._mirror = JobMirror(results, asyncio.get_running_loop())
            self._worker = GpuWorker(registry, self._mirror, results, SilentBus(), budget, settings, self._load_fn)
            self._worker.start()
        return self._worker

    async def run(self, job: Job, inputs: dict[str, bytes], started: bool) -> AsyncIterator[JobMessage]:
        """Run ``job`` (``started``: a preparation stage already moved it to processing); ``inputs``: its input
        files' bytes by the path the job names them by on the API machine."""
        worker = self._started_worker()
        local = replace(job, inputs=self._place_inputs(job, inputs))
        queue = self._mirror.watch(local)
        worker.enqueue(local, started=started)
        try:
            while True:
                message = await queue.get()
                yield message
                if isinstance(message, (Finished, Failed)):
                    return
        finally:
            self._mirror.forget(job.id)
            shutil.rmtree(self._inputs / job.id, ignore_errors=True)

    async def state(self) -> DeviceState:
        worker = self._started_worker()
        return DeviceState(
            actor=self.name,
            node_id=ray.get_runtime_context().get_node_id(),
            budget=replace(worker.budget, probe_free=None),
            resident=worker.resident(),
            queued=worker.queue_depth,
            measured=dict(worker.measured),
            load_seconds=dict(worker.load_seconds),
            loads=worker.loads,
            evictions=worker.evictions,
            unparks=worker.unparks,
        )

    async def ping(self) -> str:
        return self.name

    def _place_inputs(self, job: Job, blobs: dict[str, bytes]) -> dict:
        folder = self._inputs / job.id
        folder.mkdir(parents=True, exist_ok=True)

        def local(path: str) -> str:
            target = folder / Path(path).name
            target.write_bytes(blobs[path])
            return str(target)

        return {
            field: [local(p) for p in value] if isinstance(value, list) else local(value)
            for field, value in job.inputs.items()
        }

