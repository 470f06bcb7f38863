"""The GPU worker: the one owner of resident models. It applies scheduler Plans and runs pipelines.

Models the plan evicts leave the device for host RAM where the plan parks them (``park``), within the
host budget, and are dropped otherwise; a parked model comes back by ``LoadedModel.unpark`` (a copy), not
by its loader. ``loads`` counts loads from disk, ``unparks`` the models taken back from RAM.

Loads and runs happen on a single executor thread (one GPU stream of work); the asyncio loop only
decides and persists, so the HTTP API stays responsive while a long job runs.
"""

from __future__ import annotations

import asyncio
import base64
import gc
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from collections import Counter
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable

from engine.batching import Slices
from engine.devices import DeviceBudget
from engine.dispatcher import DeviceView
from engine.errors import JobFailure
from engine.events import EventBus, JobEvent
from engine.executor_process import ExecutorDied, ExecutorProcess, RemoteModel
from engine.jobs import Completion, Job, JobStore
from engine.results import ResultFiles
from engine.scheduler import ParkedModel, Plan, QueuedJob, ResidentModel, expired_models, plan
from engine.settings import Settings
from engine.tasks import TaskResult, task_named
from model_registry import LoadedModel, ModelRegistry, ModelSpec
from engine.working_memory import Request, measure_peak, request_of, shape_key
from model_registry.footprint import Footprint, footprint, job_working_bytes, read_layout
from model_registry.placement import Placement
from model_registry.pricing import settled_price

__all__ = ("GpuWorker", "ModelStats")

log = logging.getLogger(__name__)

_FIGURE_KEYS_KEPT = 64
"""Shapes remembered between queue views before a full look forgets those no longer queued."""

_BOOKKEEPING_SLICE = 32
"""Jobs a pass starts or ends in one transaction before the event loop answers other requests. A pass
holds up to max_batch_inputs (256) jobs; starting or ending them in one go held every submit behind it
for 20 to 50 ms on 2 CPU cores, the submits' p99."""


@dataclass
class _Resident:
    loaded: LoadedModel
    last_used: float
    leases: int = 0


@dataclass(frozen=True)
class ModelStats:
    slug: str
    memory_bytes: int
    leases: int
    idle_seconds: float
    load_seconds: float


class GpuWorker:
    def __init__(
        self,
        registry: ModelRegistry,
        jobs: JobStore,
        results: ResultFiles,
        events: EventBus,
        budget: DeviceBudget,
        settings: Settings,
        load_fn: Callable[[ModelSpec, str, Placement], LoadedModel] | None = None,
        on_loaded: Callable[[str, int, float], None] | None = None,
        isolated: ExecutorProcess | None = None,
        working_measured: dict[tuple[str, str], int] | None = None,
        on_working: Callable[[str, str, int], None] | None = None,
        on_step: Callable[[], None] | None = None,
    ) -> None:
        self.registry = registry
        self.jobs = jobs
        self.results = results
        self.events = events
        self.budget = budget
        self.settings = settings
        self.isolated = isolated
        """The inference process models live in (Settings.isolate_executor), or None: this process."""
        self._generation = isolated.generation if isolated else 0
        self.load_fn = load_fn or (isolated.load if isolated else registry.load)
        self.on_loaded = on_loaded
        """Told (slug, memory_bytes, load_seconds) after each load, so the measurements can outlive the process."""
        self.measured: dict[str, int] = {}
        """Memory each model was measured to take when loaded; replaces the spec's estimate."""
        self.working_measured: dict[tuple[str, str], int] = dict(working_measured or {})
        """(slug, job shape) -> the most working memory a job of that shape took (engine/working_memory.py)."""
        self.on_working = on_working
        """Told (slug, shape, bytes) after each job measured alone, so the figure outlives the process."""
        self.on_step = on_step
        """Called after each scheduling step that did something: a device changed (engine/dispatcher.py retries)."""
        self._load_floor: dict[str, int] = {}
        """Models whose load ran out of memory: their next load plans with the whole budget (all idle models
        leave first), so the estimate that failed once does not fail the next job the same way."""
        self._requests: dict[str, Request] = {}
        """Each queued job's request (its shape), read once at enqueue."""
        self._layout = read_layout()
        self._footprints: dict[str, tuple[Footprint, Placement]] = {}
        self.load_seconds: dict[str, float] = {}
        self.loads = 0
        self.evictions = 0
        """Models that left the device to make room (parked or dropped)."""
        self.parks = 0
        self.unparks = 0
        self.unpark_seconds: dict[str, float] = {}
        self._parked: dict[str, _Resident] = {}
        """Models parked in host RAM, with when they were last used."""
        self._queue: list[QueuedJob] = []
        self._wanted: Counter[str] = Counter()
        """The models of the queued jobs, with how many each: what the dispatcher asks on every submit, kept as
        the queue changes (a set built from a backlog of thousands took longer than the rest of a submit)."""
        self._figures: dict[tuple[str, Request | None], tuple[int, int, str | None, int]] = {}
        """What a queued job needs, by (model, request shape), as the last queue view worked it out."""
        self._unviewed = 0
        """Entries queued since the last view: the queue's tail (removals keep the order); at most this many."""
        self._resident: dict[str, _Resident] = {}
        self._started: set[str] = set()
        self._slices = Slices()
        """Jobs run a slice at a time, so the jobs that arrive meanwhile join each pass (engine/batching.py)."""
        self._finishing: set[asyncio.Task] = set()
        """Results being stored while the next pass runs."""
        self._served: dict[str, float] = {}
        """When each account's last job started: the turns of the scheduler's fair order."""
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="drylocal-gpu")
        self._wake = asyncio.Event()
        self._task: asyncio.Task | None = None
        self._closing = False

    # ---------------------------------------------------------------- public
    def enqueue(self, job: Job, *, started: bool = False) -> None:
        """Queue a ``pending`` job, or (``started``) one a preparation stage already moved to processing."""
        if started:
            self._started.add(job.id)
        task = task_named(job.task)
        batchable = bool(task and task.pipeline.batchable)
        size = self._slices.queue_size(task, job.id, job.params) if batchable else 1
        try:
            self._requests[job.id] = request_of(self.registry.get(job.model), job.params, job.inputs)
        except Exception:  # an unknown model fails at planning, with its own message
            pass
        # Queued with its shape's figures as the last view worked them out (the next view checks them), so
        # a view finds nothing to change in a job queued since: no copy of each.
        key = (job.model, self._requests.get(job.id))
        need, working, refusal, host = self._figures.get(key) or (0, 0, None, 0)
        self._queue_add(
            QueuedJob(
                job_id=job.id,
                model=job.model,
                task=job.task,
                need_bytes=need,
                enqueued_at=time.time(),
                batchable=batchable,
                size=size,
                account=job.account_id,
                working_bytes=working,
                refusal=refusal,
                host_bytes=host,
            )
        )
        self._wake.set()

    @property
    def queue_depth(self) -> int:
        return len(self._queue)

    def resident(self) -> list[ModelStats]:
        now = time.time()
        return [
            ModelStats(slug, r.loaded.memory_bytes, r.leases, now - r.last_used, self.load_seconds.get(slug, 0.0))
            for slug, r in self._resident.items()
        ]

    def parked(self) -> list[ModelStats]:
        """The models parked in host RAM (``memory_bytes``: the RAM each takes there)."""
        now = time.time()
        return [
            ModelStats(slug, p.loaded.park_bytes or 0, 0, now - p.last_used, self.load_seconds.get(slug, 0.0))
            for slug, p in self._parked.items()
        ]

    def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name="drylocal-worker")

    async def stop(self) -> None:
        self._closing = True
        self._wake.set()
        if self._task:
            self._task.cancel()
            try:
                await self._task
            except (asyncio.CancelledError, Exception):
                pass
        await asyncio.gather(*self._finishing, return_exceptions=True)
        for slug in list(self._resident):
            await self._unload(slug)
        for slug in list(self._parked):
            await self._drop_parked(slug)
        if self.isolated is not None:
            await asyncio.get_running_loop().run_in_executor(self._executor, self.isolated.stop)
        self._executor.shutdown(wait=True, cancel_futures=True)

    # ---------------------------------------------------------------- loop
    async def _loop(self) -> None:
        while not self._closing:
            try:
                worked = await self._step()
            except asyncio.CancelledError:
                raise
            except Exception:  # the loop must outlive any single bad job
                log.exception("worker step failed")
                worked = False
            if worked and self.on_step is not None:
                try:
                    self.on_step()
                except Exception:
                    log.exception("the step callback failed")
            if not worked:
                self._wake.clear()
                try:
                    await asyncio.wait_for(self._wake.wait(), timeout=1.0)
                except asyncio.TimeoutError:
                    pass

    async def _step(self) -> bool:
        self._forget_lost_models()
        now = time.time()
        for slug in expired_models(self._resident_view(), now):
            await self._unload(slug)
        decision = plan(
            self._queue_view(),
            self._resident_view(),
            self.budget.budget_bytes,
            now,
            self.settings.max_wait_seconds,
            self.settings.max_batch_inputs,
            self._served,
            self._parked_view(),
            self.budget.park_budget_bytes,
        )
        for job_id, reason in decision.fail:
            self._dequeue([job_id])
            self._fail(job_id, "OUT_OF_MEMORY", reason)
        if not decision.run:
            return bool(decision.fail)
        # The plan looked at the whole queue; what came in meanwhile is answered before the pass starts.
        # Nothing the plan relies on moves meanwhile: only this loop loads and runs, and a job that ended
        # meanwhile is not started (start_all takes pending jobs only).
        await asyncio.sleep(0)
        for slug in decision.drop:
            await self._drop_parked(slug)
        for slug in decision.evict:
            await self._unload(slug)
            self.evictions += 1
        for slug in decision.park:
            await self._park(slug)
            self.evictions += 1
        need = self._job_memory(decision.model, decision.run[0])[0]
        if decision.load and not (decision.unpark and await self._unpark(decision.model, need)):
            if not await self._load(decision, need):
                return True
        await self._run(decision)
        return True

    def _forget_lost_models(self) -> None:
        """After the inference process died, what it held is gone: nothing is resident or parked."""
        if self.isolated is None or self.isolated.generation == self._generation:
            return
        self._generation = self.isolated.generation
        self._resident = {slug: r for slug, r in self._resident.items() if not r.loaded.gone}
        self._parked = {slug: p for slug, p in self._parked.items() if not p.loaded.gone}

    def _queue_view(self) -> list[QueuedJob]:
        """The queue with what each job needs as of now (placements change as models load, measures come in).

        Worked out once per model and request shape. Where no shape's figures changed since the last view, only
        the jobs queued since are looked at: with a backlog of thousands, a look at every job on every pass held
        the event loop (and every request waiting on it) for up to 11 ms a pass; a new copy of every job was
        worse (and the garbage collector's work)."""
        queue = self._queue
        tail = len(queue) - min(self._unviewed, len(queue))
        keys = set(self._figures) | {(q.model, self._requests.get(q.job_id)) for q in queue[tail:]}
        figures = {key: self._figures_of(*key) for key in keys}
        rescan = any(self._figures.get(key, now) != now for key, now in figures.items()) or len(figures) > _FIGURE_KEYS_KEPT
        if rescan:
            tail = 0  # everything again
        queued = set()
        for index in range(tail, len(queue)):
            q = queue[index]
            key = (q.model, self._requests.get(q.job_id))
            queued.add(key)
            now = figures.get(key)
            if now is None:
                now = figures[key] = self._figures_of(*key)
            if now != (q.need_bytes, q.working_bytes, q.refusal, q.host_bytes):
                queue[index] = replace(q, need_bytes=now[0], working_bytes=now[1], refusal=now[2], host_bytes=now[3])
        if rescan:  # the shapes no longer queued are forgotten
            figures = {key: figures[key] for key in queued}
        self._figures, self._unviewed = figures, 0
        return list(queue)

    def _figures_of(self, model: str, request: Request | None) -> tuple[int, int, str | None, int]:
        need, working = self._memory_of(model, request)
        return need, working, self._refusal(model), self._host_held(model)

    def _resident_view(self) -> list[ResidentModel]:
        return [
            ResidentModel(
                slug,
                self._held(slug, r.loaded),
                r.last_used,
                r.leases,
                self._keep_alive(r.loaded.spec),
                r.loaded.park_bytes if self.budget.park_budget_bytes > 0 else None,
                self._host_held(slug),
            )
            for slug, r in self._resident.items()
        ]

    def _parked_view(self) -> list[ParkedModel]:
        return [ParkedModel(slug, p.loaded.park_bytes or 0, p.last_used) for slug, p in self._parked.items()]

    def _host_held(self, slug: str) -> int:
        """Host RAM ``slug`` holds while resident on a GPU: an offloaded placement's weights."""
        if not self.budget.device.startswith("cuda"):
            return 0
        try:
            return self.placement(slug).host_bytes
        except Exception:
            return 0

    def placement(self, slug: str) -> Placement:
        """Where ``slug`` sits on this device: the fastest placement that fits its budgets, decided once."""
        return self._placed(slug)[1]

    def _placed(self, slug: str) -> tuple[Footprint, Placement]:
        spec = self.registry.get(slug)
        if spec.slug not in self._footprints:
            fp = footprint(spec, self._layout)
            self._footprints[spec.slug] = fp, self.budget.place(fp)
        return self._footprints[spec.slug]

    def view(self, job: Job) -> DeviceView:
        """This device as engine/dispatcher.py sees it for ``job``."""
        try:
            request = request_of(self.registry.get(job.model), job.params, job.inputs)
        except Exception:
            request = None
        need, working = self._memory_of(job.model, request)
        held = {slug: self._held(slug, r.loaded) for slug, r in self._resident.items()}
        wanted = self._wanted
        idle = sum(b for slug, b in held.items() if self._resident[slug].leases == 0 and slug not in wanted)
        resident = job.model in self._resident
        running = sum(r.leases for r in self._resident.values())
        return DeviceView(
            self.budget.budget_bytes, sum(held.values()), idle, resident, working if resident else need,
            len(self._queue) + running, refused=self._refusal(job.model) is not None,
        )

    def _job_memory(self, slug: str, job_id: str) -> tuple[int, int]:
        return self._memory_of(slug, self._requests.get(job_id))

    def _memory_of(self, slug: str, request: Request | None) -> tuple[int, int]:
        """(GPU memory the job takes with its model, the part of it above what the model holds resident).

        Offloaded, the model's placement need already is a job's peak at the largest request, and the other
        loaders' figure includes what they run in (their reserve): their jobs add nothing. A resident
        offloadable pipeline holds its weights (measured once loaded) and each job adds its working memory."""
        try:
            fp, placement = self._placed(slug)
        except Exception:
            return 0, 0
        floor = self._load_floor.get(slug, 0)
        if placement.offloaded or placement.kind == "too_big":
            return max(placement.gpu_bytes, floor), 0
        if not fp.offloadable:
            return max(self.measured.get(slug, placement.gpu_bytes), floor), 0
        weights = self.measured.get(slug, placement.gpu_bytes - placement.working_bytes)
        working = self._working(slug, request, placement)
        return max(weights + working, floor), working

    def _working(self, slug: str, request: Request | None, placement: Placement) -> int:
        """Measured for the job's shape, else estimated at its request, else the placement's (largest request)."""
        if request is None:
            return placement.working_bytes
        measured = self.working_measured.get((slug, shape_key(request)))
        if measured is not None:
            return measured
        estimate = job_working_bytes(self.registry.get(slug), request, placement.vae_tiling)
        return placement.working_bytes if estimate is None else estimate

    def _refusal(self, slug: str) -> str | None:
        """On a GPU, why no placement fits (the CPU keeps the scheduler's own budget message)."""
        if not self.budget.device.startswith("cuda"):
            return None
        try:
            placement = self.placement(slug)
        except Exception:
            return None
        return placement.reason if placement.kind == "too_big" else None

    def _held(self, slug: str, loaded: LoadedModel) -> int:
        """What a loaded model holds on the GPU for planning: its weights, or an offloaded one's whole need
        (it takes that much whenever it runs)."""
        try:
            placement = self.placement(slug)
        except Exception:
            return loaded.memory_bytes
        return placement.gpu_bytes if placement.offloaded else loaded.memory_bytes

    def _keep_alive(self, spec: ModelSpec) -> float:
        return spec.keep_alive_seconds if spec.keep_alive_seconds is not None else self.settings.keep_alive_seconds

    def _queue_add(self, entry: QueuedJob) -> None:
        self._queue.append(entry)
        self._wanted[entry.model] += 1
        self._unviewed += 1

    def _dequeue(self, job_ids) -> None:
        gone = set(job_ids)
        self._wanted -= Counter(q.model for q in self._queue if q.job_id in gone)  # drops models counted down to 0
        self._queue = [q for q in self._queue if q.job_id not in gone]
        for job_id in gone:
            self._requests.pop(job_id, None)

    # ---------------------------------------------------------------- load / unload
    async def _load(self, decision: Plan, need: int) -> bool:
        """``need``: the GPU memory the decision's job takes with the model, waited for before loading."""
        slug = decision.model
        assert slug is not None
        loop = asyncio.get_running_loop()
        await self._wait_for_memory(need)
        started = time.perf_counter()
        failure = None
        try:
            spec = self.registry.get(slug)
            placement = self.placement(slug)
            loaded = await loop.run_in_executor(self._executor, self.load_fn, spec, self.budget.device, placement)
        except Exception as exc:
            died_of_memory = isinstance(exc, ExecutorDied) and exc.memory
            code = "OUT_OF_MEMORY" if _is_oom(exc) or died_of_memory else "PROCESSING_ERROR"
            log.exception("loading %s failed", slug)
            failure = (code, f"Model {slug} failed to load: {exc}")
        if failure is not None:
            # Out of the except block: its traceback's frames hold what the failed load built, which the
            # release must find unreferenced.
            if failure[0] == "OUT_OF_MEMORY":
                self._load_floor[slug] = self.budget.budget_bytes
            # Released before the jobs fail: a client that retries on the error finds the memory free (and a
            # server stopping right after the error has released it too).
            try:
                await loop.run_in_executor(self._executor, _release_memory, self.budget.device)
            except Exception:
                log.exception("releasing the memory of %s's failed load failed", slug)
            self._dequeue(decision.run)
            for job_id in decision.run:
                self._fail(job_id, *failure)
            return False
        self.load_seconds[slug] = time.perf_counter() - started
        self.measured[slug] = loaded.memory_bytes
        self._load_floor.pop(slug, None)  # measured now
        self.loads += 1
        self._resident[slug] = _Resident(loaded, time.time())
        if self.on_loaded is not None:
            try:
                self.on_loaded(slug, loaded.memory_bytes, self.load_seconds[slug])
            except Exception:  # the record is informational; the loaded model must still serve
                log.exception("recording the measurements of %s failed", slug)
        return True

    async def _wait_for_memory(self, need: int, timeout: float = 10.0) -> None:
        """After an unload the driver returns memory lazily: re-probe until the load fits, or give up
        after ``timeout`` and let the load report a real out-of-memory if it still does not fit."""
        if self.budget.probe_free is None:
            return
        # What the allocator caches is free to the next load but not in the driver's count until emptied.
        await asyncio.get_running_loop().run_in_executor(self._executor, _release_memory, self.budget.device)
        deadline = time.monotonic() + timeout
        while self.budget.probe_free() < need and time.monotonic() < deadline:
            await asyncio.sleep(0.1)

    async def _park(self, slug: str) -> None:
        """Move an evicted model to host RAM; where that fails, it is dropped."""
        resident = self._resident.pop(slug, None)
        if resident is None:
            return
        loop = asyncio.get_running_loop()

        def park() -> None:
            resident.loaded.park()
            _release_memory(self.budget.device)

        try:
            await loop.run_in_executor(self._executor, park)
        except Exception:
            log.exception("parking %s failed; dropping it", slug)
            self._resident[slug] = resident
            await self._unload(slug)
            return
        self._parked[slug] = resident
        self.parks += 1

    async def _unpark(self, slug: str | None, need: int) -> bool:
        """Take a parked model back onto the device (a copy); False where it is not parked or the copy
        failed (it is then dropped, and the caller loads it from disk)."""
        parked = self._parked.pop(slug, None) if slug is not None else None
        if parked is None:
            return False
        loop = asyncio.get_running_loop()
        await self._wait_for_memory(need)
        started = time.perf_counter()
        try:
            await loop.run_in_executor(self._executor, parked.loaded.unpark)
        except Exception:
            log.exception("taking %s back from RAM failed; loading it again", slug)
            self._resident[slug] = parked
            await self._unload(slug)
            return False
        self.unpark_seconds[slug] = time.perf_counter() - started
        self.unparks += 1
        parked.last_used = time.time()
        self._resident[slug] = parked
        return True

    async def _drop_parked(self, slug: str) -> None:
        parked = self._parked.pop(slug, None)
        if parked is None:
            return
        loop = asyncio.get_running_loop()

        def release() -> None:
            _discard(parked.loaded)
            gc.collect()

        await loop.run_in_executor(self._executor, release)

    async def _unload(self, slug: str) -> None:
        resident = self._resident.pop(slug, None)
        if resident is None:
            return
        loop = asyncio.get_running_loop()

        def release() -> None:
            _discard(resident.loaded)
            _release_memory(self.budget.device)

        await loop.run_in_executor(self._executor, release)

    # ---------------------------------------------------------------- run
    async def _run(self, decision: Plan) -> None:
        slug = decision.model
        resident = self._resident[slug]
        request = self._requests.get(decision.run[0]) if len(decision.run) == 1 else None
        queued = {}  # the sliced jobs' queue entries, kept for their next slice (a scan only when there are some)
        if any(self._slices.sliced(job_id) for job_id in decision.run):
            queued = {q.job_id: (q, self._requests.get(q.job_id)) for q in self._queue if self._slices.sliced(q.job_id)}
        self._dequeue(decision.run)
        jobs, fresh = [], []
        for job_id in decision.run:
            if self._slices.begun(job_id):
                job = self.jobs.get(job_id)
                if job is not None and not job.finished:
                    jobs.append(job)
                else:  # failed or stopped between two of its slices
                    self._slices.forget(job_id)
            elif job_id in self._started:
                self._started.discard(job_id)
                if self.jobs.resume(job_id):
                    jobs.append(self.jobs.get(job_id))
            else:
                fresh.append(job_id)
        for at in range(0, len(fresh), _BOOKKEEPING_SLICE):  # one commit a slice, not one a job
            if at:
                await asyncio.sleep(0)
            try:
                started = self.jobs.start_all(fresh[at : at + _BOOKKEEPING_SLICE])
            except Exception:
                if not at:
                    raise
                # The slices started already run now rather than wait, marked processing, for a restart; the
                # rest stay pending, as a whole pass did when its one start failed.
                log.exception("starting a pass's jobs failed after %d of them", at)
                break
            jobs.extend(started)
            self.events.publish_all([JobEvent.of(job, "pending") for job in started])
        if not jobs:
            return
        for job in jobs:
            self._served[job.account_id] = time.time()
        task = task_named(jobs[0].task)
        if task is None:  # a job stored by a build that had this task
            for job in jobs:
                self._fail(job.id, "PROCESSING_ERROR", f"This drylocal build has no {job.task} task.")
            return
        loop = asyncio.get_running_loop()
        resident.leases += 1
        try:
            outputs, peak = await loop.run_in_executor(self._executor, self._execute, task, resident.loaded, jobs)
        except JobFailure as failure:
            for job in jobs:
                self._fail(job.id, failure.code, failure.message)
            return
        except ExecutorDied as death:
            # Quarantined: the job that killed the process is failed (refunded), never run again.
            log.error("%s on %s: %s", jobs[0].task, slug, death.detail)
            code = "OUT_OF_MEMORY" if death.memory else "PROCESSING_ERROR"
            for job in jobs:
                self._fail(job.id, code, f"{death.detail[:1].upper()}{death.detail[1:]} while running this job; "
                                         "the job is not retried, so it cannot do it again.")
            return
        except Exception as exc:
            log.exception("%s on %s failed", jobs[0].task, slug)
            if _is_oom(exc):
                for job in jobs:
                    self._fail(job.id, "OUT_OF_MEMORY", f"{slug} ran out of memory: {exc}")
                resident.leases -= 1
                await self._unload(slug)
                return
            for job in jobs:
                self._fail(job.id, "PROCESSING_ERROR", f"{type(exc).__name__}: {exc}")
            return
        finally:
            resident.leases = max(0, resident.leases - 1)
            resident.last_used = time.time()
        if peak is not None and request is not None:
            self._record_working(slug, shape_key(request), peak)
        ended = []
        for job, output in zip(jobs, outputs):
            if not self._slices.sliced(job.id):  # a whole job: its output is its result
                ended.append((job, output))
                continue
            try:
                # Off the event loop: it reports the job's progress (the database, the events) and joins a finished
                # job's slices, as a pipeline's own progress runs on the executor's thread.
                whole = await asyncio.to_thread(self._slices.record, task, job.id, job.params, output)
            except JobFailure as failure:  # its time limit, checked between slices
                self._fail(job.id, failure.code, failure.message)
                continue
            if whole is not None:
                ended.append((job, whole))
                continue
            entry, shape = queued[job.id]
            self._queue_add(replace(entry, size=self._slices.queue_size(task, job.id, job.params)))
            if shape is not None:
                self._requests[job.id] = shape
        if ended:
            self._finish_later(ended)

    def _execute(self, task, loaded, jobs: list[Job]) -> tuple[list[TaskResult], int | None]:
        """Run the jobs' pipeline on the executor thread, here or in the inference process: their results,
        and the GPU memory the run took above what was allocated before it (None where not measured)."""
        progress = self._progress_reporter(jobs[0]) if len(jobs) == 1 else None
        params = [self._slices.params(task, job.id, job.params, lambda job=job: self._progress_reporter(job)) for job in jobs]
        if isinstance(loaded, RemoteModel):
            return loaded.run(task.name, params, [job.inputs for job in jobs], progress)
        return run_measured(task, loaded, params, [job.inputs for job in jobs], progress)

    def _record_working(self, slug: str, shape: str, peak: int) -> None:
        known = self.working_measured.get((slug, shape))
        if known is not None and known >= peak:
            return
        self.working_measured[(slug, shape)] = peak
        if self.on_working is not None:
            try:
                self.on_working(slug, shape, peak)
            except Exception:  # the record only informs later plans; the job's result must still be stored
                log.exception("recording the working memory of %s failed", slug)

    def _progress_reporter(self, job: Job):
        task = task_named(job.task)
        limit = task.time_limit(job.params, self.settings.job_time_limit_seconds) if task else 0.0
        deadline = time.monotonic() + limit if limit else None

        def report(progress: float, preview_jpeg: bytes | None = None) -> None:
            # Each step is where a job can be stopped: past its limit, the pipeline ends at its next step.
            if deadline is not None and time.monotonic() > deadline:
                raise JobFailure("WORKER_TIMEOUT", f"The job ran past its time limit of {limit:.0f} s and was stopped.")
            preview = base64.b64encode(preview_jpeg).decode() if preview_jpeg else None
            previous = self.jobs.get(job.id)
            if self.jobs.report_progress(job.id, progress, preview):
                self._publish(self.jobs.get(job.id), previous.status if previous else None)

        return report

    def _finish_later(self, ended: list[tuple[Job, TaskResult]]) -> None:
        """Store a pass's results while the next pass runs: the device does not wait for the disk and the
        database (a micro-batch's results took about a fifth of the time of 32 one-text clients on 2 CPU
        cores). The pass's files are written in one trip to a thread and its jobs end in one commit."""
        finishing = asyncio.create_task(self._finish(ended), name=f"drylocal-finish-{ended[0][0].id}")
        self._finishing.add(finishing)
        finishing.add_done_callback(self._finished)

    def _finished(self, finishing: asyncio.Task) -> None:
        self._finishing.discard(finishing)
        if not finishing.cancelled() and finishing.exception() is not None:
            log.error("storing a result failed", exc_info=finishing.exception())

    async def _finish(self, ended: list[tuple[Job, TaskResult]]) -> None:
        stored = await asyncio.to_thread(self._store_all, ended)
        completions = []
        for (job, output), files in zip(ended, stored):
            if isinstance(files, OSError):
                self.results.remove(job.id)
                self._fail(job.id, "PROCESSING_ERROR", f"The result could not be stored: {files.strerror or files}")
                continue
            try:
                final_price = settled_price(self.registry.get(job.model), job.params, output.meta)
            except Exception:  # a model removed from the catalog since: the quote stands
                final_price = None
            relative, alt = files
            result = output.text if job.return_inline else None
            completions.append(Completion(job.id, result, relative, alt, output.meta, final_price))
        for at in range(0, len(completions), _BOOKKEEPING_SLICE):
            if at:
                await asyncio.sleep(0)  # the requests that came in meanwhile are answered between two slices
            ended = self.jobs.complete_all(completions[at : at + _BOOKKEEPING_SLICE])
            self.events.publish_all([JobEvent.of(job, previous) for job, previous in ended])

    def _store_all(self, ended: list[tuple[Job, TaskResult]]) -> list[tuple[str, dict[str, str]] | OSError]:
        """Each job's result files written, durable together (the path of its result, and of each other
        format), or why not: a job with any file unwritten fails, alone."""
        files = []
        for job, output in ended:
            files.append((job.id, output.filename, output.data))
            files.extend((job.id, f"result.{fmt}", data) for fmt, data in output.alt_formats.items())
        written = iter(self.results.write_all(files))
        stored: list[tuple[str, dict[str, str]] | OSError] = []
        for _, output in ended:
            relative = next(written)
            alt = {fmt: next(written) for fmt in output.alt_formats}
            failure = next((path for path in (relative, *alt.values()) if isinstance(path, OSError)), None)
            stored.append(failure or (relative, alt))  # type: ignore[arg-type]
        return stored

    def _fail(self, job_id: str, code: str, message: str) -> None:
        self._started.discard(job_id)
        self._slices.forget(job_id)
        job = self.jobs.get(job_id)
        if job and self.jobs.fail(job_id, code, message):
            self._publish(self.jobs.get(job_id), job.status)

    def _publish(self, job: Job, previous: str | None) -> None:
        self.events.publish(JobEvent.of(job, previous))


def run_measured(task, loaded: LoadedModel, params: list[dict], inputs: list[dict], progress=None):
    """The task's pipeline over the jobs (one, or a micro-batch), with the GPU memory it took above the start."""
    typed = [task.typed(p, _as_paths(i)) for p, i in zip(params, inputs)]
    with measure_peak(loaded.device) as peak:
        if len(typed) > 1:
            outputs = task.pipeline.run_batch(loaded, typed)
        else:
            outputs = [task.pipeline.run(loaded, typed[0], progress)]
    return outputs, peak.bytes


def _as_paths(inputs: dict) -> dict:
    return {name: [Path(p) for p in value] if isinstance(value, list) else Path(value) for name, value in inputs.items()}


def _is_oom(exc: BaseException) -> bool:
    if getattr(exc, "oom", False):  # raised in the inference process
        return True
    return isinstance(exc, MemoryError) or type(exc).__name__ == "OutOfMemoryError" or "out of memory" in str(exc).lower()


def _discard(loaded: LoadedModel) -> None:
    """Let go of everything a loaded model holds, so the collector and the allocator can free it: its
    handle and what it keeps beside it (condition pipelines, batched decoders share its weights)."""
    loaded.close()
    loaded.handle = None
    extras = getattr(loaded, "extras", None)
    if extras is not None:
        extras.clear()


def _release_memory(device: str) -> None:
    gc.collect()
    if device.startswith("cuda"):
        import torch

        torch.cuda.empty_cache()
