"""What each model was measured to take here: device memory and load time when it last loaded, kept for
``drylocal models`` to show beside the estimates; and the working memory of its jobs per shape
(engine/working_memory.py), which the worker plans with across restarts."""

from __future__ import annotations

import time
from pathlib import Path
from typing import NamedTuple

from engine.database import Database

__all__ = ("Measurement", "MeasurementStore")


class Measurement(NamedTuple):
    memory_bytes: int
    load_seconds: float


class MeasurementStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    def record(self, slug: str, memory_bytes: int, load_seconds: float) -> None:
        """The last measurement per model replaces the one before."""
        self.db.execute(
            "INSERT INTO model_measurements (slug, memory_bytes, load_seconds, measured_at) VALUES (?, ?, ?, ?) "
            "ON CONFLICT(slug) DO UPDATE SET memory_bytes = excluded.memory_bytes, "
            "load_seconds = excluded.load_seconds, measured_at = excluded.measured_at",
            (slug, memory_bytes, load_seconds, time.time()),
        )

    def record_working(self, slug: str, shape: str, working_bytes: int) -> None:
        """The largest peak seen for the shape: one job may have peaked less than the next will."""
        self.db.execute(
            "INSERT INTO working_measurements (slug, shape, working_bytes, measured_at) VALUES (?, ?, ?, ?) "
            "ON CONFLICT(slug, shape) DO UPDATE SET working_bytes = CASE WHEN excluded.working_bytes > working_measurements.working_bytes"
            " THEN excluded.working_bytes ELSE working_measurements.working_bytes END, "
            "measured_at = excluded.measured_at",
            (slug, shape, working_bytes, time.time()),
        )

    def working(self) -> dict[tuple[str, str], int]:
        """(slug, shape) -> the largest working memory measured for it."""
        rows = self.db.query("SELECT slug, shape, working_bytes FROM working_measurements")
        return {(row["slug"], row["shape"]): row["working_bytes"] for row in rows}

    def all(self) -> dict[str, Measurement]:
        rows = self.db.query("SELECT slug, memory_bytes, load_seconds FROM model_measurements")
        return {row["slug"]: Measurement(row["memory_bytes"], row["load_seconds"]) for row in rows}

    @classmethod
    def read(cls, db_path: Path) -> dict[str, Measurement]:
        """The measurements of a data folder's database, without a running engine (none yet: empty)."""
        if not db_path.exists():
            return {}
        db = Database(db_path)
        try:
            return cls(db).all()
        finally:
            db.close()
