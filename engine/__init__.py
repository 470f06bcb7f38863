"""Jobs, scheduling, task pipelines, results and event delivery. Knows nothing about HTTP."""

from engine.accounts import Account
from engine.engine import Engine, Upload
from engine.jobs import Job
from engine.settings import Settings

__all__ = ("Account", "Engine", "Job", "Settings", "Upload")
