"""Why the last server process died, as its supervisor saw it: left on disk for the next process,
which fails the jobs the dead one was running instead of re-running them into the same death."""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

__all__ = ("CrashReport",)


@dataclass(frozen=True)
class CrashReport:
    reason: str
    """``memory`` (killed by the supervisor at its limit) or ``crash`` (died on its own)."""
    detail: str
    at: float

    @staticmethod
    def path(home: Path) -> Path:
        return home / "last-crash.json"

    def save(self, home: Path) -> None:
        target = self.path(home)
        partial = target.with_suffix(".part")
        partial.write_text(json.dumps(asdict(self)))
        os.replace(partial, target)

    @classmethod
    def take(cls, home: Path) -> "CrashReport | None":
        """The report, removed once read, so its jobs are failed exactly once."""
        target = cls.path(home)
        try:
            report = cls(**json.loads(target.read_text()))
        except (OSError, ValueError, TypeError):
            return None
        target.unlink(missing_ok=True)
        return report
