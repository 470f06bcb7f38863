"""What drylocal keeps, and for how long: results, leftover inputs, finished job rows, delivered
webhooks and old rate windows expire by settings, so the data folder does not grow forever.

Money is never collected: the ledger keeps every charge and refund (a balance is their sum), even
after the job rows they name are gone.
"""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from engine.database import Database
from engine.settings import Settings

__all__ = ("GcReport", "collect")

_DELIVERED_KEEP_SECONDS = 24 * 3600
"""Delivered or abandoned webhook rows: kept a day, long enough to see what was sent."""


@dataclass(frozen=True)
class GcReport:
    results: int
    inputs: int
    bytes_freed: int
    job_rows: int
    webhook_rows: int
    rate_rows: int

    def __str__(self) -> str:
        return (
            f"freed {self.bytes_freed / 1e6:.1f} MB: {self.results} results, {self.inputs} input folders; "
            f"deleted {self.job_rows} finished jobs, {self.webhook_rows} webhook deliveries, {self.rate_rows} rate windows"
        )


def collect(db: Database, settings: Settings, now: float | None = None) -> GcReport:
    now = time.time() if now is None else now
    results_before = now - settings.result_retention_seconds
    rows_before = now - settings.job_retention_seconds
    results = inputs = freed = 0
    # Results of jobs finished before the cut: files gone, the row says so (no URL to a missing file).
    for row in db.query(
        "SELECT id, result_file FROM jobs WHERE status IN ('done', 'error') AND finished_at < ? AND result_file IS NOT NULL",
        (results_before,),
    ):
        freed += _remove(settings.results_dir / row["id"])
        db.execute("UPDATE jobs SET result_file = NULL, result_alt = '{}' WHERE id = ?", (row["id"],))
        results += 1
    # Inputs are removed when a job ends; what is left belongs to jobs that ended in a crash or are gone.
    live = {row["id"] for row in db.query("SELECT id FROM jobs WHERE status IN ('pending', 'processing', 'in_progress')")}
    for folder in _children(settings.inputs_dir):
        if folder.name not in live:
            freed += _remove(folder)
            inputs += 1
    job_rows = db.execute("DELETE FROM jobs WHERE status IN ('done', 'error') AND finished_at < ?", (rows_before,))
    for folder in _children(settings.results_dir):  # results whose rows are gone
        if db.query_one("SELECT 1 FROM jobs WHERE id = ?", (folder.name,)) is None:
            freed += _remove(folder)
            results += 1
    webhook_rows = db.execute(
        "DELETE FROM webhook_outbox WHERE state IN ('delivered', 'failed') AND created_at < ?",
        (now - _DELIVERED_KEEP_SECONDS,),
    ) if _has_table(db, "webhook_outbox") else 0
    rate_rows = db.execute("DELETE FROM rate_windows WHERE started_at < ?", (now - 2 * 86400,)) if _has_table(db, "rate_windows") else 0
    return GcReport(results, inputs, freed, job_rows, webhook_rows, rate_rows)


def _children(folder: Path) -> list[Path]:
    return [child for child in folder.iterdir() if child.is_dir()] if folder.is_dir() else []


def _remove(folder: Path) -> int:
    size = sum(f.stat().st_size for f in folder.rglob("*") if f.is_file()) if folder.exists() else 0
    shutil.rmtree(folder, ignore_errors=True)
    return size


def _has_table(db: Database, name: str) -> bool:
    return db.has_table(name)
