"""Submits accepted in one step of the event loop are written in one transaction (a group commit).

A submit's job row is written before its id is answered. One transaction each cost about ten times what an
insert inside a shared one does (SQLite's BEGIN and COMMIT, PostgreSQL's round trips and write lock), and
while submits arrive faster than one at a time, several are waiting on the loop together. Each waits on a
future; the first schedules a flush at the end of the current step, which writes every order gathered by
then and hands each its job, or its refusal. No submit waits for company: a lone one is written in the
very next step.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from engine.jobs import Job, JobOrder, JobStore

__all__ = ("JobIntake",)


class JobIntake:
    def __init__(
        self, jobs: JobStore, accepted: Callable[[Job], None], refused: Callable[[JobOrder], None] = lambda order: None
    ) -> None:
        self.jobs = jobs
        self.accepted = accepted
        """Called with each job once written, in the flush: a submit cancelled while it waited (its client
        gone) still leaves a job that runs, never a pending row nobody queued."""
        self.refused = refused
        """Called with each order not written (its uploads to remove), whether or not its submit still waits."""
        self._orders: list[tuple[JobOrder, asyncio.Future[Job]]] = []

    async def create(self, order: JobOrder) -> Job:
        loop = asyncio.get_running_loop()
        written: asyncio.Future[Job] = loop.create_future()
        self._orders.append((order, written))
        if len(self._orders) == 1:
            loop.call_soon(self._flush)
        return await written

    def _flush(self) -> None:
        batch, self._orders = self._orders, []
        try:
            outcomes = self.jobs.create_all([order for order, _ in batch])
        except Exception as exc:  # the store itself failed: every order in the group is refused with it
            outcomes = [exc] * len(batch)
        for (order, written), outcome in zip(batch, outcomes, strict=True):
            if isinstance(outcome, BaseException):
                self.refused(order)
            else:
                try:
                    self.accepted(outcome)
                except Exception as exc:  # answered as the submit's own failure, as when it queued the job itself
                    outcome = exc
            if written.cancelled():  # its submit was cancelled while it waited; the job stands
                continue
            if isinstance(outcome, BaseException):
                written.set_exception(outcome)
            else:
                written.set_result(outcome)
