"""Per-key request limits as the hosted service applies them (limits-and-quotas.md).

Each request falls in a bucket (its endpoint; Basic accounts' four Whisper routes share one). A bucket
has a per-minute window that starts at its first request, Laravel-style, and a per-day window that
resets at midnight UTC. Refused requests are not counted. Windows live in the database, so a restart
hands out no fresh quota.
"""

from __future__ import annotations

import datetime as dt
import math
import time
from dataclasses import dataclass

from engine.database import Database
from engine.errors import RateLimited

__all__ = ("Limit", "RateLimiter", "bucket_for", "configured_limits", "default_limits")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS rate_windows (
    account_id TEXT NOT NULL,
    bucket TEXT NOT NULL,
    "window" TEXT NOT NULL,  -- quoted: a reserved word in PostgreSQL
    started_at REAL NOT NULL,
    count INTEGER NOT NULL,
    PRIMARY KEY (account_id, bucket, "window")
)
"""


@dataclass(frozen=True)
class Limit:
    per_minute: int | None
    per_day: int | None = None


def default_limits() -> dict[str, dict[str, Limit]]:
    """The documented tables, as the task modules declare them: Basic per endpoint (some routes share a
    bucket), Premium 300 RPM on every endpoint and no daily cap. The ``unlimited`` tier (the machine's
    owner) has none."""
    from engine.tasks import TASKS

    basic = {task.rate_bucket or task.name: task.rate_limit for task in TASKS.values() if task.rate_limit}
    basic["price-calculation"] = Limit(50, 200)
    basic["request-status"] = Limit(50, 200)
    premium = {task.name: Limit(300, None) for task in TASKS.values() if task.rate_limit}
    premium.update({route: Limit(300, None) for route in ("price-calculation", "request-status")})
    return {"basic": basic, "premium": premium}


def configured_limits(overrides: dict[str, dict[str, list[int]]]) -> dict[str, dict[str, Limit]]:
    """The documented tables with a user's overrides: ``{tier: {bucket: [per_minute, per_day]}}``,
    0 meaning no limit (TOML has no null)."""
    limits = default_limits()
    for tier, buckets in overrides.items():
        for bucket, (per_minute, per_day) in buckets.items():
            limits.setdefault(tier, {})[bucket] = Limit(per_minute or None, per_day or None)
    return limits


def bucket_for(route: str, tier: str) -> str | None:
    """The bucket of a client route (the path after ``/api/v1/client/``), or None when it is not limited."""
    from engine.tasks import task_named

    route = route.strip("/")
    head, _, tail = route.rpartition("/")
    if route.endswith("price-calculation") or (tail == "price" and task_named(head) is not None):
        return "price-calculation"
    if route.startswith("request-status"):
        return "request-status"
    task = task_named(route)
    if task is not None and task.rate_bucket and tier == "basic":
        return task.rate_bucket
    return route


class RateLimiter:
    def __init__(self, db: Database, limits: dict[str, dict[str, Limit]], enabled: bool = True) -> None:
        self.db = db
        self.limits = limits
        self.enabled = enabled
        db.execute(_SCHEMA)

    def hit(self, account_id: str, tier: str, bucket: str | None, now: float | None = None) -> None:
        """Count one request, or raise RateLimited (with the seconds to wait) when a window is full."""
        limit = self.limits.get(tier, {}).get(bucket) if bucket else None
        if not self.enabled or limit is None:
            return
        now = time.time() if now is None else now
        day_start = _midnight_utc(now)
        with self.db.transaction() as db:
            rows = {
                r["window"]: r
                for r in db.execute(
                    'SELECT "window", started_at, count FROM rate_windows WHERE account_id = ? AND bucket = ?',
                    (account_id, bucket),
                ).fetchall()
            }
            minute = _current(rows.get("minute"), lambda started: now - started < 60)
            day = _current(rows.get("day"), lambda started: started >= day_start)
            if limit.per_minute is not None and minute and minute[1] >= limit.per_minute:
                raise RateLimited(max(1, math.ceil(minute[0] + 60 - now)), "minute")
            if limit.per_day is not None and day and day[1] >= limit.per_day:
                raise RateLimited(max(1, math.ceil(day_start + 86400 - now)), "day")
            for window, current, fresh_start in (("minute", minute, now), ("day", day, day_start)):
                started, count = current or (fresh_start, 0)
                db.execute(
                    'INSERT INTO rate_windows (account_id, bucket, "window", started_at, count) VALUES (?,?,?,?,?)'
                    ' ON CONFLICT (account_id, bucket, "window") DO UPDATE SET started_at = excluded.started_at,'
                    " count = excluded.count",
                    (account_id, bucket, window, started, count + 1),
                )


def _current(row, still_open) -> tuple[float, int] | None:
    if row is None or not still_open(row["started_at"]):
        return None
    return row["started_at"], row["count"]


def _midnight_utc(now: float) -> float:
    today = dt.datetime.fromtimestamp(now, dt.timezone.utc).replace(hour=0, minute=0, second=0, microsecond=0)
    return today.timestamp()
