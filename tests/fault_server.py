"""``drylocal serve`` with one fault injected, for the crash tests: run as ``python -m tests.fault_server``.

DRYLOCAL_FAULT=slow-result-write: every result is half written to its ``.part`` file, then the
writer stalls (a dying disk) after touching ``$DRYLOCAL_HOME/stalled``, so a test can kill -9 the
process mid-write.
DRYLOCAL_FAULT=poison-text: an embedding job whose input is ``HOG`` allocates memory without end (as
a runaway synthesis did), one whose input is ``SEGV`` kills its process with SIGSEGV (a native crash);
every other input embeds normally.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

from engine.results import ResultStore
from server.cli import main


def _stalling_write_all(self: ResultStore, files) -> list[str]:
    job_id, filename, data = files[0]
    folder = self.root / job_id
    folder.mkdir(parents=True, exist_ok=True)
    partial = folder / (Path(filename).name + ".part")
    partial.write_bytes(data[: len(data) // 2])
    (Path(os.environ["DRYLOCAL_HOME"]) / "stalled").touch()
    time.sleep(3600)
    raise AssertionError("unreachable: the test kills the process")


def _poisoned(run):
    def poisoned(self, model, params, progress):
        if params.input == "HOG":
            hoard = []
            while True:
                hoard.append(bytearray(64 * 1024 * 1024))  # zero-filled: every page touched
                time.sleep(0.02)
        if params.input == "SEGV":
            os.kill(os.getpid(), signal.SIGSEGV)
        return run(self, model, params, progress)

    return poisoned


if os.environ.get("DRYLOCAL_FAULT") == "slow-result-write":
    ResultStore.write_all = _stalling_write_all
if os.environ.get("DRYLOCAL_FAULT") == "poison-text":
    from engine.tasks.txt2embedding import PIPELINE

    type(PIPELINE).run = _poisoned(type(PIPELINE).run)

sys.exit(main())
