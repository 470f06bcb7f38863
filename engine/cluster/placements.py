"""Which actor runs each job, beside the job row: dispatch records it before the job is sent, so the
reconciler (engine/cluster/pool.py) can find a job whose actor was lost even where no exception said so.

A table of its own (created here, like the webhook outbox's), so the jobs schema stays as the single box has it.
A row matters only while its job is live: the reconciler sweeps the rows of ended (or deleted) jobs each pass,
so the table holds about as many rows as there are jobs in flight.
"""

from __future__ import annotations

import time

from engine.jobs import ACTIVE, TERMINAL

__all__ = ("JobPlacements",)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS job_placements (
    job_id TEXT PRIMARY KEY,
    actor TEXT NOT NULL,
    placed_at REAL NOT NULL
)
"""


class JobPlacements:
    def __init__(self, db) -> None:
        self.db = db
        db.execute(_SCHEMA)

    def record(self, job_id: str, actor: str) -> None:
        self.db.execute(
            "INSERT INTO job_placements (job_id, actor, placed_at) VALUES (?, ?, ?)"
            " ON CONFLICT (job_id) DO UPDATE SET actor = excluded.actor, placed_at = excluded.placed_at",
            (job_id, actor, time.time()),
        )

    def actor_of(self, job_id: str) -> str | None:
        row = self.db.query_one("SELECT actor FROM job_placements WHERE job_id = ?", (job_id,))
        return row["actor"] if row else None

    def running(self, placed_before: float) -> list[tuple[str, str]]:
        """(job id, actor) of every running job placed before ``placed_before``."""
        marks = ",".join("?" * len(ACTIVE))
        rows = self.db.query(
            "SELECT p.job_id, p.actor FROM job_placements p JOIN jobs j ON j.id = p.job_id"
            f" WHERE j.status IN ({marks}) AND p.placed_at < ?",
            (*ACTIVE, placed_before),
        )
        return [(row["job_id"], row["actor"]) for row in rows]

    def forget(self, job_id: str) -> None:
        self.db.execute("DELETE FROM job_placements WHERE job_id = ?", (job_id,))

    def sweep(self) -> int:
        """Delete the rows of jobs that ended or are gone (retention deleted them); how many went."""
        marks = ",".join("?" * len(TERMINAL))
        return self.db.execute(
            "DELETE FROM job_placements WHERE NOT EXISTS (SELECT 1 FROM jobs j WHERE j.id = job_placements.job_id"
            f" AND j.status NOT IN ({marks}))",
            TERMINAL,
        )
