"""``drylocal serve`` with one fault injected, for the crash tests: run as ``python -m tests.fault_server``.

DRYLOCAL_FAULT=slow-result-write: every result is half written to its ``.part`` file, then the
writer stalls (a dying disk) after touching ``$DRYLOCAL_HOME/stalled``, so a test can kill -9 the
process mid-write.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

from engine.results import ResultStore
from server.cli import main


def _stalling_write(self: ResultStore, job_id: str, filename: str, data: bytes) -> str:
    folder = self.root / job_id
    folder.mkdir(parents=True, exist_ok=True)
    partial = folder / (Path(filename).name + ".part")
    partial.write_bytes(data[: len(data) // 2])
    (Path(os.environ["DRYLOCAL_HOME"]) / "stalled").touch()
    time.sleep(3600)
    raise AssertionError("unreachable: the test kills the process")


if os.environ.get("DRYLOCAL_FAULT") == "slow-result-write":
    ResultStore.write = _stalling_write

sys.exit(main())
