"""Inference in a child process the server supervises (``Settings.isolate_executor``).

Models load, park and run in one spawned process; the server keeps a :class:`RemoteModel` for each, with
the figures the scheduler plans by. A job that kills that process (a native crash, the kernel's OOM
killer, or this module's own memory limit) no longer takes the API with it: the server stays up, the
job is failed with the reason and refunded (never retried into a crash loop, see the worker), and the
next call starts a fresh process, with every model it held gone.

The protocol is one request at a time over a pipe (the worker runs one device operation at a time);
a running pipeline's progress comes back as it happens and waits for the server's word, so the job
time limit still stops a job at its next step.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import os
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable

from engine.errors import JobFailure
from engine.process_memory import die_with_parent, resident_bytes
from engine.settings import Settings
from model_registry import ModelSpec
from model_registry.placement import Placement

__all__ = ("ExecutorDied", "ExecutorProcess", "RemoteError", "RemoteModel")

log = logging.getLogger(__name__)

_WATCH_SECONDS = 0.2


class ExecutorDied(RuntimeError):
    """The inference process died during a call; ``memory`` when this module killed it at its limit."""

    def __init__(self, detail: str, *, memory: bool) -> None:
        super().__init__(detail)
        self.detail = detail
        self.memory = memory


class RemoteError(Exception):
    """An exception raised in the inference process, re-raised here under its own class name."""

    oom = False


_REMOTE_CLASSES: dict[str, type[RemoteError]] = {}


def _remote_error(kind: str, message: str, oom: bool) -> RemoteError:
    cls = _REMOTE_CLASSES.setdefault(kind, type(kind, (RemoteError,), {}))
    error = cls(message)
    error.oom = oom
    return error


@dataclass
class RemoteModel:
    """A model held by the inference process: what the scheduler needs to know of it, and its operations."""

    spec: ModelSpec
    device: str
    memory_bytes: int
    precision: str
    park_bytes: int | None
    executor: ExecutorProcess
    generation: int
    handle: Any = True

    @property
    def parkable(self) -> bool:
        return self.park_bytes is not None

    @property
    def gone(self) -> bool:
        """Whether the process that held it has died since."""
        return self.generation != self.executor.generation

    def park(self) -> None:
        self.executor.call("park", self.spec.slug, self.device)

    def unpark(self) -> None:
        self.executor.call("unpark", self.spec.slug)

    def close(self) -> None:
        if not self.gone:
            self.executor.call("close", self.spec.slug, self.device)

    def run(self, task: str, params: list[dict], inputs: list[dict], progress: Callable[..., None] | None):
        """(results, GPU memory the run took above its start, or None): engine.worker.run_measured, there."""
        return self.executor.call("run", self.spec.slug, task, params, inputs, progress=progress)


class ExecutorProcess:
    def __init__(self, settings: Settings, memory_limit_bytes: int) -> None:
        self.settings = settings
        self.memory_limit_bytes = memory_limit_bytes
        self.generation = 0
        """Counts the processes that died; a RemoteModel loaded in an earlier generation is gone."""
        self._lock = threading.Lock()
        self._process: multiprocessing.process.BaseProcess | None = None
        self._conn = None
        self._killed_for_memory: str | None = None

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None and self._process.is_alive() else None

    # ---------------------------------------------------------------- the worker's calls (blocking)
    def load(self, spec: ModelSpec, device: str, placement: Placement | None = None) -> RemoteModel:
        info = self.call("load", spec.slug, device, placement)
        return RemoteModel(spec, device, info["memory_bytes"], info["precision"], info["park_bytes"], self, self.generation)

    def release(self, device: str) -> None:
        self.call("release", device)

    def call(self, *message: Any, progress: Callable[..., None] | None = None) -> Any:
        with self._lock:
            if self.pid is None:
                self._start()
            try:
                self._conn.send(message)
                while True:
                    reply = self._conn.recv()
                    if reply[0] == "progress":
                        self._conn.send(self._progressed(progress, reply[1:]))
                        continue
                    if reply[0] == "ok":
                        return reply[1]
                    if reply[0] == "failure":
                        raise JobFailure(reply[1], reply[2])
                    raise _remote_error(reply[1], reply[2], reply[3])
            except (EOFError, OSError) as exc:
                raise self._died(exc) from None

    def stop(self) -> None:
        with self._lock:
            if self._process is None:
                return
            try:
                self._conn.send(("exit",))
            except OSError:
                pass
            self._process.join(10)
            if self._process.is_alive():
                self._process.kill()
                self._process.join(5)
            self._process = None

    # ---------------------------------------------------------------- internals
    @staticmethod
    def _progressed(progress: Callable[..., None] | None, report: tuple) -> tuple:
        """The server's word on a progress report: go on, or stop (the job's time limit)."""
        if progress is None:
            return ("go",)
        try:
            progress(*report)
        except JobFailure as failure:
            return ("stop", failure.code, failure.message)
        return ("go",)

    def _start(self) -> None:
        context = multiprocessing.get_context("spawn")  # CUDA cannot be initialized in a forked child
        self._conn, child = context.Pipe()
        self._killed_for_memory = None
        self._process = context.Process(target=_serve, args=(child, self.settings), name="drylocal-executor", daemon=True)
        self._process.start()
        child.close()
        if self.memory_limit_bytes:
            threading.Thread(target=self._watch, args=(self._process,), name="drylocal-executor-watch", daemon=True).start()
        log.info("inference process %d started", self._process.pid)

    def _watch(self, process) -> None:
        """Kill the process before it takes the machine's memory; the running call then reports why."""
        while process.is_alive():
            used = resident_bytes(process.pid)
            if used is not None and used > self.memory_limit_bytes:
                self._killed_for_memory = (
                    f"the inference process reached {used / 2**30:.1f} GiB, over its limit of "
                    f"{self.memory_limit_bytes / 2**30:.1f} GiB, and was stopped"
                )
                process.kill()
                return
            time.sleep(_WATCH_SECONDS)

    def _died(self, exc: BaseException) -> ExecutorDied:
        process = self._process
        if process is not None:
            process.join(5)
        self._process = None
        self.generation += 1
        if self._killed_for_memory:
            return ExecutorDied(self._killed_for_memory, memory=True)
        code = process.exitcode if process is not None else None
        how = f"signal {-code}" if code is not None and code < 0 else f"exit code {code}"
        return ExecutorDied(f"the inference process died ({how})", memory=False)


# -------------------------------------------------------------------- the child
_INFERENCE_NICENESS = 5
"""CFS weights 1024 against 335: with both runnable on one core, the API gets three quarters of it."""


def _serve(conn, settings: Settings) -> None:
    """The inference process: load, park, run and close models as the server asks, one request at a time."""
    die_with_parent()
    # Before torch loads OpenMP: idle OpenMP threads sleep instead of spinning. On a few cores shared with the
    # server (and whatever else runs), a spinning thread holds the core its peer needs to reach the barrier:
    # on 2 cores with other work running, a one-text MiniLM forward took 180-420 ms spinning, 30-45 ms sleeping.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    # Where inference computes on the CPU cores the API needs too, the API goes first: a submit or a poll is a
    # millisecond of work a client waits on, and inference gets every cycle the API leaves. (On a GPU the
    # process mostly waits for the card, and this changes nothing.)
    with contextlib.suppress(OSError):
        os.nice(_INFERENCE_NICENESS)
    from engine.tasks import task_named
    from engine.worker import _discard, _is_oom, _release_memory, run_measured
    from model_registry import ModelRegistry, WeightsLocator

    registry = ModelRegistry.from_files(WeightsLocator(settings.models_dir), settings.config_file)
    models: dict[str, Any] = {}

    def report(progress: float, preview_jpeg: bytes | None = None) -> None:
        conn.send(("progress", progress, preview_jpeg))
        word = conn.recv()
        if word[0] == "stop":
            raise JobFailure(word[1], word[2])

    def load(slug: str, device: str, placement: Placement | None) -> dict:
        loaded = registry.load(registry.get(slug), device, placement)
        models[slug] = loaded
        return {"memory_bytes": loaded.memory_bytes, "precision": loaded.precision, "park_bytes": loaded.park_bytes}

    def close(slug: str, device: str) -> None:
        loaded = models.pop(slug, None)
        if loaded is not None:
            _discard(loaded)
        _release_memory(device)

    def park(slug: str, device: str) -> None:
        models[slug].park()
        _release_memory(device)

    def run(slug: str, name: str, params: list[dict], inputs: list[dict]) -> tuple[list, int | None]:
        return run_measured(task_named(name), models[slug], params, inputs, report)

    operations: dict[str, Callable[..., Any]] = {
        "load": load,
        "close": close,
        "park": park,
        "unpark": lambda slug: models[slug].unpark(),
        "release": _release_memory,
        "run": run,
    }
    while True:
        try:
            message = conn.recv()
        except (EOFError, OSError):
            return
        if message[0] == "exit":
            return
        try:
            conn.send(("ok", operations[message[0]](*message[1:])))
        except JobFailure as failure:
            conn.send(("failure", failure.code, failure.message))
        except Exception as exc:  # reported to the server, which fails the job with it
            conn.send(("error", type(exc).__name__, str(exc), _is_oom(exc)))
