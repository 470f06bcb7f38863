"""Which device a job runs on, when the machine has several (one GpuWorker each, engine/worker.py).

``dispatch`` is a pure function, like engine/scheduler.py's ``plan``: it sees each device as a ``DeviceView``
(what is resident, what could leave, how much the job would take there) and routes the job:

1. to a device that has its model resident, the shortest queue first;
2. else to one where it fits in the free memory (shortest queue, then the most room);
3. else to one where it fits once idle models leave (the device's own plan evicts them);
4. else nowhere yet: the job is held here until a device changes (``HOLD``), at most ``max_wait`` seconds, then
   it goes to the least busy device where it fits alone, whose plan waits for models in use to finish.

A job that fits no device even alone goes to the largest one, whose plan fails it with the reason (too big,
or what would fit). The device's own scheduler then orders, batches and evicts as on a one-device machine.
``Dispatcher`` holds what ``dispatch`` held and asks again whenever a device finishes a step.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable, Sequence

__all__ = ("HOLD", "DeviceView", "Dispatcher", "dispatch")

HOLD = -1
"""``dispatch``'s answer for a job that must wait for a device to change."""


@dataclass(frozen=True)
class DeviceView:
    budget_bytes: int
    held_bytes: int
    """What the resident models hold on the device now."""
    idle_bytes: int
    """The part of held_bytes that idle models (no job running or queued for them) hold: what could leave."""
    resident: bool
    """The job's model is resident here."""
    need_bytes: int
    """What the job takes here with its model loaded (placements differ by device size); for a resident model,
    what it takes on top of what is held."""
    queued: int
    """Jobs queued or running on this device."""
    refused: bool = False
    """The job's model has no placement on this device."""


def dispatch(views: Sequence[DeviceView], waited: float = 0.0, max_wait: float = 30.0) -> int:
    """The index of the device the job goes to, or HOLD. ``waited``: how long it has been held already."""
    if not views:
        raise ValueError("no devices")
    order = sorted(range(len(views)), key=lambda i: (views[i].queued, -(views[i].budget_bytes - views[i].held_bytes)))
    placeable = [i for i in order if not views[i].refused and views[i].need_bytes <= views[i].budget_bytes]
    if not placeable:
        return max(range(len(views)), key=lambda i: views[i].budget_bytes)
    for i in placeable:
        if views[i].resident:
            return i
    free = [i for i in placeable if views[i].need_bytes <= views[i].budget_bytes - views[i].held_bytes]
    if free:
        return free[0]
    after_eviction = [
        i for i in placeable if views[i].need_bytes <= views[i].budget_bytes - views[i].held_bytes + views[i].idle_bytes
    ]
    if after_eviction:
        return after_eviction[0]
    return placeable[0] if waited >= max_wait else HOLD


@dataclass
class _Held:
    item: object
    since: float


class Dispatcher:
    """Routes jobs to devices with ``dispatch``; holds what it cannot route yet and retries on ``retry()``."""

    def __init__(
        self,
        views: Callable[[object], list[DeviceView]],
        send: Callable[[int, object], None],
        max_wait: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._views = views
        self._send = send
        self.max_wait = max_wait
        self._clock = clock
        self._held: list[_Held] = []

    @property
    def held(self) -> int:
        return len(self._held)

    def clear(self) -> None:
        """Forget the held jobs: a new leader's recovery queues every pending job again."""
        self._held = []

    def submit(self, item: object) -> None:
        self._held.append(_Held(item, self._clock()))
        self.retry()

    def retry(self) -> None:
        """Route every held job that can go now, oldest first."""
        now = self._clock()
        waiting = []
        for held in self._held:
            target = dispatch(self._views(held.item), now - held.since, self.max_wait)
            if target == HOLD:
                waiting.append(held)
            else:
                self._send(target, held.item)
        self._held = waiting
