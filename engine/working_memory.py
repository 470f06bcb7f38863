"""A job's working memory: what it adds on the GPU above its model's weights while it runs.

The scheduler plans weights + the job's working memory. The figure for a job is the one measured for its
shape on this machine (``max_memory_allocated`` above what was allocated when it started, recorded by the
worker after each job run alone), else the family's estimate at the job's own request
(model_registry/footprint.job_working_bytes), else what the model's placement holds for its largest request.

A shape is the request rounded up to buckets (64-pixel edges, 8-frame steps, 10-second clips), so that a
measure holds for every job it would have bounded: working memory only grows with each dimension.
"""

from __future__ import annotations

import math
from contextlib import contextmanager
from typing import Any, Iterator, Mapping

from model_registry.footprint import Request
from model_registry.spec import ModelSpec

__all__ = ("PeakBox", "measure_peak", "request_of", "shape_key")

_EDGE = 64
_FRAMES = 8
_SECONDS = 10.0


def _up(value: float, step: float) -> float:
    return math.ceil(value / step) * step


def request_of(spec: ModelSpec, params: Mapping[str, Any], inputs: Mapping[str, Any]) -> Request:
    """The job's request, rounded up to its shape's bucket; the model's defaults fill what it leaves out."""
    width = params.get("width") or spec.default("width", 1024)
    height = params.get("height") or spec.default("height", width)
    frames = params.get("frames") or spec.default("frames", 1)
    seconds = params.get("duration") or spec.default("duration", 0)
    images = sum(len(v) if isinstance(v, list) else 1 for k, v in inputs.items() if "image" in k and v)
    return Request(
        int(_up(int(width), _EDGE)),
        int(_up(int(height), _EDGE)),
        1 + int(_up(max(int(frames) - 1, 0), _FRAMES)),
        float(_up(float(seconds), _SECONDS)),
        images,
    )


def shape_key(request: Request) -> str:
    """The bucket's name, as measurements are stored: ``1024x1024 f1 s0 i0``."""
    return f"{request.width}x{request.height} f{request.frames} s{request.seconds:g} i{request.images}"


class PeakBox:
    bytes: int | None = None
    """The peak above the start, once the block ends; None where it cannot be measured (not CUDA)."""


@contextmanager
def measure_peak(device: str) -> Iterator[PeakBox]:
    """The most GPU memory allocated during the block above what was allocated when it began."""
    box = PeakBox()
    if not device.startswith("cuda"):
        yield box
        return
    import torch

    torch.cuda.synchronize(device)
    start = torch.cuda.memory_allocated(device)
    torch.cuda.reset_peak_memory_stats(device)
    yield box
    torch.cuda.synchronize(device)
    box.bytes = max(0, torch.cuda.max_memory_allocated(device) - start)
