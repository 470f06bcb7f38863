"""What a device actor will hold once the jobs already sent to it run: the API process's own view of each actor,
for engine/dispatcher.py.

An actor's ``DeviceState`` is fetched after each of its jobs ends, so between fetches it says nothing of what was
sent since: under concurrent clients, jobs for a model the actor is about to load went elsewhere and swapped
(scripts/bench_cluster.py). A local ``GpuWorker`` knows its queue at once; here the API side knows what it sent, so
a model that a job in flight needs counts as resident (the actor's plan loads it for that job, and the next job
rides along), and the idle models that must leave to make room for it no longer count. Pure, without Ray.
"""

from __future__ import annotations

from typing import Callable, Collection, Sequence

from engine.dispatcher import DeviceView
from engine.worker import ModelStats

__all__ = ("projected_residency", "projected_view")


def projected_residency(
    resident: Sequence[ModelStats], in_flight: Collection[str], budget_bytes: int, size_of: Callable[[str], int]
) -> dict[str, int]:
    """Model -> bytes the actor will hold: ``resident`` (its last state) with the models of ``in_flight`` (the
    jobs sent to it and not yet ended) added at ``size_of``, less the idle ones its plan evicts to make room,
    least recently used first, as engine/scheduler.py does."""
    held = {m.slug: m.memory_bytes for m in resident}
    for slug in in_flight:
        if slug not in held:
            held[slug] = size_of(slug)
    idle_oldest_first = sorted((m for m in resident if m.slug not in in_flight), key=lambda m: -m.idle_seconds)
    for model in idle_oldest_first:
        if sum(held.values()) <= budget_bytes:
            break
        del held[model.slug]
    return held


def projected_view(
    model: str,
    resident: Sequence[ModelStats],
    in_flight: Collection[str],
    budget_bytes: int,
    size_of: Callable[[str], int],
    working_bytes: int,
    queued: int,
    refused: bool,
) -> DeviceView:
    """The device for a job on ``model``, as it will stand once ``in_flight`` (the models of the jobs sent to it
    that its last state may not show) runs; ``working_bytes``: what the job adds beside its resident model;
    ``queued``: the jobs sent to it whose stream is still open."""
    wanted = set(in_flight)
    held = projected_residency(resident, wanted, budget_bytes, size_of)
    idle = sum(size for slug, size in held.items() if slug not in wanted and slug != model)
    here = model in held
    need = working_bytes if here else size_of(model)
    return DeviceView(budget_bytes, sum(held.values()), idle, here, need, queued, refused=refused)
