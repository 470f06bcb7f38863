"""Large batchable jobs run a slice at a time, so the jobs that arrive meanwhile share the next forward pass.

A micro-batch (engine/scheduler.py) is every waiting job of one model, up to ``max_batch_inputs`` inputs,
taken as soon as the worker is free: there is no fixed wait, a lone request runs at once and the requests
that arrive while a pass runs make up the next one. What that alone cannot do is let a small job past a
large one: a 2048-text job run whole holds the model for the whole list. So a job with more inputs than its
pipeline's ``slice_inputs`` is queued with one slice as its size; each pass runs its next slice beside the
other jobs batched with it, and the job goes back to the queue (keeping its first enqueue time, so its place
in the fair order) until its last slice has run; then the pipeline's ``join`` makes the slices' results
into the job's one result. A small job submitted behind a large one waits for at most one pass.

Progress and the job's time limit are reported between slices, as a pipeline reports them between steps.
The slices' results are held in the server's memory only: the job is durable as a whole (the job store),
so a server that dies mid-way runs it again from its first slice, like any interrupted job.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import msgspec

from engine.tasks import TaskResult

__all__ = ("Slices",)


@dataclass
class _Sliced:
    total: int
    step: int
    done: int = 0
    running: int = 0
    """Inputs of the pass in flight."""
    parts: list[TaskResult] = field(default_factory=list)
    report: Callable[[float], None] | None = None


class Slices:
    """The worker's record of the jobs it runs a slice at a time."""

    def __init__(self) -> None:
        self._jobs: dict[str, _Sliced] = {}

    def queue_size(self, task, job_id: str, params: dict[str, Any]) -> int:
        """The inputs the job adds to its next pass: all of them, or its next slice."""
        total = task.pipeline.batch_size(task.typed(params))
        step = getattr(task.pipeline, "slice_inputs", None)
        if job_id in self._jobs:
            sliced = self._jobs[job_id]
            return min(sliced.step, sliced.total - sliced.done)
        if not step or total <= step:
            return total
        self._jobs[job_id] = _Sliced(total, step)
        return step

    def begun(self, job_id: str) -> bool:
        """Whether some of the job's slices have run (it is already processing)."""
        sliced = self._jobs.get(job_id)
        return sliced is not None and sliced.done > 0

    def sliced(self, job_id: str) -> bool:
        return job_id in self._jobs

    def params(self, task, job_id: str, params: dict[str, Any],
               reporter: Callable[[], Callable[[float], None]]) -> dict[str, Any]:
        """The parameters of the job's next pass: its next slice's, or the job's own. ``reporter`` makes the
        job's progress reporter (its time limit counts from its first pass)."""
        sliced = self._jobs.get(job_id)
        if sliced is None:
            return params
        if sliced.report is None:
            sliced.report = reporter()
        sliced.running = min(sliced.step, sliced.total - sliced.done)
        return msgspec.to_builtins(task.pipeline.part(task.typed(params), sliced.done, sliced.done + sliced.running))

    def record(self, task, job_id: str, params: dict[str, Any], output: TaskResult) -> TaskResult | None:
        """Keep a pass's result: the job's whole result once its last slice ran, else None (after reporting
        its progress, which raises JobFailure past its time limit)."""
        sliced = self._jobs.get(job_id)
        if sliced is None:
            return output
        sliced.parts.append(output)
        sliced.done += sliced.running
        if sliced.done < sliced.total:
            sliced.report(100.0 * sliced.done / sliced.total)
            return None
        del self._jobs[job_id]
        return task.pipeline.join(task.typed(params), sliced.parts)

    def forget(self, job_id: str) -> None:
        self._jobs.pop(job_id, None)
