"""What a device actor streams back for a job: its transitions, in order, ending with ``Finished`` or ``Failed``."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from engine.devices import DeviceBudget
from engine.worker import ModelStats

__all__ = ("DeviceState", "Failed", "Finished", "JobMessage", "Progress", "Started")


@dataclass(frozen=True)
class Started:
    """The device took the job: the API process marks it ``processing`` (an attempt counted)."""

    job_id: str


@dataclass(frozen=True)
class Progress:
    job_id: str
    progress: float
    preview: str | None = None
    """A base64 JPEG, as ``JobStore.report_progress`` stores it."""


@dataclass(frozen=True)
class Finished:
    job_id: str
    files: dict[str, bytes]
    """The result files by name (the main one and each alternative format); the API process stores them."""
    result_file: str
    """Which of ``files`` is the result."""
    result_alt: dict[str, str] = field(default_factory=dict)
    """Format -> the name in ``files``."""
    result: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)
    final_price: float | None = None


@dataclass(frozen=True)
class Failed:
    job_id: str
    code: str
    message: str


JobMessage = Started | Progress | Finished | Failed


@dataclass(frozen=True)
class DeviceState:
    """A device actor as it stands: what the API process's dispatcher and ``serving`` read between jobs."""

    actor: str
    node_id: str
    budget: DeviceBudget
    """Its budget (without ``probe_free``, which stays on the node)."""
    resident: list[ModelStats]
    queued: int
    measured: dict[str, int]
    load_seconds: dict[str, float]
    loads: int
    evictions: int
    unparks: int
