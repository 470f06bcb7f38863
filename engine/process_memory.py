"""A process's resident memory and the limits drylocal holds its processes to: the supervisor holds the
server to one, the server holds its inference process to another (Linux /proc; elsewhere unmeasured)."""

from __future__ import annotations

import os
import signal
import sys

__all__ = ("default_memory_limit", "die_with_parent", "resident_bytes")


def resident_bytes(pid: int) -> int | None:
    """The process's resident memory (Linux /proc), None where it cannot be read."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError):
        return None
    return None


def default_memory_limit(share: float = 0.9) -> int:
    """A share of the machine's RAM (90 %: below where the kernel's OOM killer would choose a victim itself)."""
    try:
        return int(share * os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):
        return 0


def die_with_parent() -> None:
    """Linux: the kernel kills this process when its parent dies, so no orphan keeps the port."""
    if not sys.platform.startswith("linux"):
        return
    import ctypes

    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass
    if os.getppid() == 1:  # the parent died before the call took effect
        os._exit(1)
