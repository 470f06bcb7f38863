"""``drylocal serve`` as a supervisor: it runs the server in a child process, restarts it when it dies,
and kills it before it takes the machine's memory.

Why: one request (a 9,500-character unpunctuated Piper text) once grew the process past 20 GB; the
kernel killed drylocal, nothing started it again, and at each manual restart the same job ran again.
Now a child that crosses the memory limit is killed by the supervisor, a child that dies on its own
(a signal, the kernel's OOM killer, a native crash) is noted, and either way the next child fails the
job it was running, refunded, instead of re-running it (``CrashReport``). A supervisor killed outright
takes its child with it (``PR_SET_PDEATHSIG``), and that child's jobs are re-queued at the next start
as after any lost machine: only a death the job itself caused quarantines it.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from engine.crash_report import CrashReport
from engine.process_memory import default_memory_limit, die_with_parent, resident_bytes

__all__ = ("CHILD_ENV", "default_memory_limit", "die_with_parent", "resident_bytes", "supervise")

log = logging.getLogger("drylocal.supervisor")

CHILD_ENV = "DRYLOCAL_SUPERVISED_CHILD"
"""Set in the child's environment: it serves instead of supervising."""
_POLL_SECONDS = 0.2
_STABLE_SECONDS = 60.0
"""A child that ran this long before dying restarts at once; faster deaths back off up to 30 s."""


def supervise(home: Path, memory_limit_bytes: int) -> int:
    """Run this same command as a child until it is asked to stop; returns the child's last exit code."""
    command = [sys.executable, *sys.orig_argv[1:]]
    env = {**os.environ, CHILD_ENV: "1"}
    stopping = threading.Event()
    child: subprocess.Popen | None = None

    def forward(signum, _frame) -> None:
        stopping.set()
        if child is not None and child.poll() is None:
            child.send_signal(signum)

    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, forward)
    backoff = 0.5
    while True:
        started = time.monotonic()
        # Its own session: a terminal's Ctrl-C reaches the supervisor alone, which forwards it once.
        child = subprocess.Popen(command, env=env, start_new_session=True)
        killed_for_memory = _watch(child, memory_limit_bytes, stopping)
        code = child.wait()
        if stopping.is_set():
            return code if code >= 0 else 0
        if killed_for_memory is not None:
            CrashReport("memory", killed_for_memory, time.time()).save(home)
        else:
            how = f"signal {signal.Signals(-code).name}" if code < 0 else f"exit code {code}"
            CrashReport("crash", f"the server process died ({how})", time.time()).save(home)
        backoff = 0.5 if time.monotonic() - started > _STABLE_SECONDS else min(30.0, backoff * 2)
        print(f"drylocal: the server stopped unexpectedly; restarting in {backoff:.1f} s", file=sys.stderr, flush=True)
        if stopping.wait(backoff):
            return 0


def _watch(child: subprocess.Popen, limit: int, stopping: threading.Event) -> str | None:
    """Poll the child's memory until it exits; kill it at ``limit`` and say how far it had gone."""
    while child.poll() is None:
        if limit and not stopping.is_set():
            used = resident_bytes(child.pid)
            if used is not None and used > limit:
                child.kill()
                return f"the job took drylocal past its memory limit ({used / 1e9:.1f} GB of {limit / 1e9:.1f} GB)"
        time.sleep(_POLL_SECONDS)
    return None
