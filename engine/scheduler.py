"""Scheduling decisions as data: which job runs next, which model loads, which models leave.

``plan`` is a pure function of the queue, the resident models and the memory budget; the worker
(engine/worker.py) applies the Plan. Rules:
- Fair between accounts: the queue is taken in turns, each account's k-th waiting job ranked with
  every other account's k-th; among equal ranks the account served longest ago goes first, then age.
  A flood from one key delays another key's job by at most one of its own jobs, not the whole flood.
- In that order, but a job whose model is resident may overtake one that needs a swap, until the first
  job has waited ``max_wait`` seconds; then it goes next whatever it costs.
- A model is loaded only if it fits beside the resident models; idle models (no lease) are evicted
  least-recently-used first to make room; models in use are never evicted.
- Two tiers: an evicted model that can move (``park_bytes`` set) is parked in host RAM, within the host
  budget, instead of being dropped; the host tier keeps the most recently used models that fit, so parked
  models are dropped least-recently-used first to make room (for newly parked ones, or for the RAM an
  offloaded model holds while resident). A job whose model is parked takes it back (``unpark``): a copy
  to the device, not a load from disk.
- A job whose model cannot fit even alone in the budget fails at once, as does one whose model has no
  placement (``refusal``). ``need_bytes`` is what the job takes with its model loaded: the model's weights on
  the GPU (an offloaded model's placement need) plus the job's own working memory (engine/working_memory.py).
- Weights + the job's working memory, never weights alone: a job whose model is resident runs only when its
  ``working_bytes`` fit beside every resident model's weights; idle models leave (LRU, parked where they can)
  to make the room, as for a load.
- Batchable jobs of the same model and task run together, up to ``max_batch`` inputs.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Iterable, Iterator

__all__ = ("ParkedModel", "Plan", "QueuedJob", "ResidentModel", "expired_models", "fair_order", "plan")


@dataclass(frozen=True)
class QueuedJob:
    job_id: str
    model: str
    task: str
    need_bytes: int
    enqueued_at: float
    batchable: bool = False
    size: int = 1
    """Inputs the job adds to a micro-batch (texts for embeddings)."""
    refusal: str | None = None
    """Why its model has no placement on this machine (model_registry/placement.py); such a job fails at once."""
    account: str = ""
    """Whose job it is: the turns of the fair order."""
    host_bytes: int = 0
    """Host RAM its model holds while resident (an offloaded pipeline's weights); counts in the host budget."""
    working_bytes: int = 0
    """GPU memory the job takes above its resident model's ``memory_bytes`` while it runs (part of need_bytes)."""


@dataclass(frozen=True)
class ResidentModel:
    slug: str
    memory_bytes: int
    last_used: float
    leases: int = 0
    keep_alive: float = 300.0
    park_bytes: int | None = None
    """Host RAM it takes once parked; None = it cannot be parked (evicted, it is dropped)."""
    host_bytes: int = 0
    """Host RAM it holds while resident (an offloaded pipeline's weights); counts in the host budget."""


@dataclass(frozen=True)
class ParkedModel:
    """A model evicted from the device but kept in host RAM."""

    slug: str
    host_bytes: int
    last_used: float


@dataclass(frozen=True)
class Plan:
    run: tuple[str, ...] = ()
    """Job ids to run now, all on ``model`` (more than one = a micro-batch)."""
    model: str | None = None
    load: bool = False
    unpark: bool = False
    """With ``load``: ``model`` is parked, so it comes back by a copy from host RAM, not from disk."""
    evict: tuple[str, ...] = ()
    """Resident models that leave the device and are dropped."""
    park: tuple[str, ...] = ()
    """Resident models that leave the device for host RAM."""
    drop: tuple[str, ...] = ()
    """Parked models dropped from host RAM to make room there."""
    fail: tuple[tuple[str, str], ...] = ()
    """(job id, reason) for jobs that can never fit."""


def plan(
    queue: list[QueuedJob],
    resident: list[ResidentModel],
    budget_bytes: int,
    now: float,
    max_wait: float,
    max_batch: int = 1,
    served: dict[str, float] | None = None,
    parked: list[ParkedModel] | None = None,
    host_budget_bytes: int = 0,
) -> Plan:
    """``served``: when each account's last job started (the turns of the fair order); ``parked``: the
    models in host RAM, within ``host_budget_bytes``."""
    too_big = tuple(
        (job.job_id, job.refusal or _too_big_reason(job, budget_bytes))
        for job in queue
        if job.refusal or job.need_bytes > budget_bytes
    )
    failing = {job_id for job_id, _ in too_big}
    eligible = [job for job in queue if job.job_id not in failing] if failing else queue
    waiting = _Turns(_fair_turns(eligible, served or {}))
    oldest = waiting.first()
    if oldest is None:
        return Plan(fail=too_big)

    loaded = {model.slug: model for model in resident}
    chosen = oldest
    if oldest.model not in loaded and now - oldest.enqueued_at < max_wait:
        chosen = next((job for job in waiting if job.model in loaded), oldest)

    is_resident = chosen.model in loaded
    # Resident, its weights are already counted in what the resident models hold: the job adds its working memory.
    need = chosen.working_bytes if is_resident else chosen.need_bytes
    free = budget_bytes - sum(model.memory_bytes for model in resident)
    evict: list[str] = []
    for model in sorted(resident, key=lambda m: m.last_used):
        if free >= need:
            break
        if model.leases == 0 and model.slug != chosen.model:
            evict.append(model.slug)
            free += model.memory_bytes
    in_use = [m for m in resident if m.slug != chosen.model and m.slug not in evict]
    if free < need and (in_use or not is_resident):
        # Models in use hold the memory; wait for a lease to end rather than overcommit. (Alone on the device,
        # a resident model runs: its need_bytes passed the budget above.)
        return Plan(fail=too_big)
    in_ram = {model.slug: model for model in parked or ()}
    host_need = replace(chosen, host_bytes=0) if is_resident else chosen  # already counted among the resident
    park, drop = _host_tier(host_need, [loaded[slug] for slug in evict], resident, in_ram, host_budget_bytes)
    return Plan(
        run=_batch(chosen, waiting, max_batch),
        model=chosen.model,
        load=not is_resident,
        unpark=not is_resident and chosen.model in in_ram,
        evict=tuple(slug for slug in evict if slug not in park),
        park=park,
        drop=drop,
        fail=too_big,
    )


def _host_tier(
    chosen: QueuedJob,
    evicted: list[ResidentModel],
    resident: list[ResidentModel],
    in_ram: dict[str, ParkedModel],
    host_budget: int,
) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(models to park, parked models to drop): the host tier keeps the most recently used of the parked
    and the parkable evicted models that fit beside what the staying resident models (and the one coming
    in) hold in RAM; one larger than the room left is passed over for the next."""
    leaving = {model.slug for model in evicted}
    room = host_budget - chosen.host_bytes - sum(m.host_bytes for m in resident if m.slug not in leaving)
    candidates = [(m.last_used, m.slug, m.host_bytes, False) for slug, m in in_ram.items() if slug != chosen.model]
    candidates += [(m.last_used, m.slug, m.park_bytes, True) for m in evicted if m.park_bytes is not None]
    park, drop = [], []
    for _, slug, size, evicted_now in sorted(candidates, key=lambda c: c[0], reverse=True):
        if size <= room:
            room -= size
            if evicted_now:
                park.append(slug)
        elif not evicted_now:
            drop.append(slug)
    return tuple(park), tuple(drop)


def fair_order(queue: list[QueuedJob], served: dict[str, float] | None = None) -> list[QueuedJob]:
    """Each account's jobs in turn: rank within its account, then the account served longest ago,
    then age."""
    return list(_fair_turns(queue, served or {}))


def _fair_turns(queue: list[QueuedJob], served: dict[str, float]) -> Iterator[QueuedJob]:
    """``fair_order`` one turn at a time, so a plan reads only as far as it decides: with a backlog of
    thousands, ordering all of it on every pass held the worker (and the GIL) for a tenth of a second.

    Ties are broken as a stable sort of (rank, served, age) over the queue by age breaks them: by the job's
    place in that age order."""
    in_order = all(a.enqueued_at <= b.enqueued_at for a, b in zip(queue, queue[1:]))
    by_age = queue if in_order else sorted(queue, key=_age)
    if len({job.account for job in by_age}) <= 1:  # one account (or none): its jobs by age
        yield from by_age
        return
    # Each account's jobs and their places in the age order, in two lists: no object per job for the collector.
    turns: dict[str, tuple[list[QueuedJob], list[int]]] = {}
    for place, job in enumerate(by_age):
        jobs, places = turns.setdefault(job.account, ([], []))
        jobs.append(job)
        places.append(place)
    never = float("-inf")
    for rank in range(max(len(jobs) for jobs, _ in turns.values())):
        level = [
            (served.get(account, never), jobs[rank].enqueued_at, places[rank], jobs[rank])
            for account, (jobs, places) in turns.items()
            if rank < len(jobs)
        ]
        level.sort(key=lambda entry: entry[:3])
        for entry in level:
            yield entry[3]


def _age(job: QueuedJob) -> float:
    return job.enqueued_at


class _Turns:
    """The fair order, taken from ``_fair_turns`` only as far as it has been read."""

    def __init__(self, turns: Iterator[QueuedJob]) -> None:
        self._turns = turns
        self._read: list[QueuedJob] = []

    def __iter__(self) -> Iterator[QueuedJob]:
        index = 0
        while True:
            if index == len(self._read):
                job = next(self._turns, None)
                if job is None:
                    return
                self._read.append(job)
            yield self._read[index]
            index += 1

    def first(self) -> QueuedJob | None:
        return next(iter(self), None)


def expired_models(resident: list[ResidentModel], now: float) -> list[str]:
    """Idle models whose keep-alive ran out (keep_alive < 0 never expires, 0 expires at once)."""
    return [
        m.slug for m in resident if m.leases == 0 and m.keep_alive >= 0 and now - m.last_used >= m.keep_alive
    ]


def _batch(chosen: QueuedJob, waiting: Iterable[QueuedJob], max_batch: int) -> tuple[str, ...]:
    if not chosen.batchable:
        return (chosen.job_id,)
    batch, size = [chosen.job_id], chosen.size
    for job in waiting:
        if job is chosen or job.model != chosen.model or job.task != chosen.task or not job.batchable:
            continue
        if size + job.size > max_batch:
            break
        batch.append(job.job_id)
        size += job.size
    return tuple(batch)


def _too_big_reason(job: QueuedJob, budget: int) -> str:
    return (
        f"Model {job.model} needs about {job.need_bytes / 1e9:.1f} GB, more than the whole memory budget of "
        f"{budget / 1e9:.1f} GB on this machine. Raise DRYLOCAL_MEMORY_BUDGET_BYTES, use a quantized variant, "
        "or run it on a larger GPU."
    )
