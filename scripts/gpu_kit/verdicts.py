"""How a family's figures are judged: pure functions of what the probes measured and what drylocal declares.

- weights: after load, within 15 % of the catalog's figure (``memory``, with the text encoders a placement
  quantizes at their quantized figure). On the CPU, of what the folder's configs hold at the CPU's precision.
- peak: over the timed jobs, at most what the worker reserves for a job of the model (engine/worker.py
  ``_need``): resident, the measured weights plus the placement's working memory (offloadable pipelines) or the
  loader's own reserve (the others); offloaded, the placement's whole GPU need.
- unload: the device's free memory back within 1 GB of what it was before the load.
- A component cut for time (Qwen-Image-Edit's transformer) is scaled back to the full model: its measured bytes
  times the ratio of its computed weights are added to weights, peak and reservation alike.
On the CPU, peak and unload are the process's resident set: reported, never judged.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from scripts.gpu_kit.folders import Prepared, stored_weight_bytes
from scripts.gpu_kit.probes import LoadRecord

__all__ = ("API_GOAL", "UNLOAD_SLACK", "WEIGHTS_TOLERANCE", "figures", "passed")

UNLOAD_SLACK = 1 << 30
"""Free memory after the unload may fall short of the baseline by this much (CUDA's own workspaces)."""
WEIGHTS_TOLERANCE = 0.15
API_GOAL = 1.02
"""Submit-to-done through the API against the raw call: the goal, reported (timing noise is no failure)."""


def folder_of(prepared: Prepared) -> Path:
    return prepared.path if prepared.path.is_dir() else prepared.path.parent


def expected_weights(spec, placement, prepared: Prepared, on_cuda: bool, tiny: bool) -> tuple[int, str]:
    if not on_cuda:
        folder, configs = folder_of(prepared), "tiny configs" if tiny else "full-size configs"
        if spec.backend == "faster-whisper":
            return stored_weight_bytes(folder, 2), f"{configs} at CTranslate2 float16"
        return stored_weight_bytes(folder, 4), f"{configs} at fp32 (the CPU's precision)"
    memory = dict(spec.memory) or {"model": spec.vram_bytes}
    for name in getattr(placement, "quantized_encoders", ()) or ():
        memory[name] = getattr(spec, "quantized_memory", {}).get(name, memory[name])
    return sum(memory.values()), "catalog"


def measured_weights(spec, placement, record: LoadRecord, on_cuda: bool) -> int:
    if not on_cuda:
        if spec.backend == "faster-whisper":
            return (Path(record.weights_path) / "model.bin").stat().st_size
        return record.host_bytes
    return record.device_bytes if placement.kind == "resident" else record.host_bytes


def reserved(spec, placement, record: LoadRecord) -> int:
    """What the worker reserves for a job of this model (GpuWorker._need)."""
    from model_registry.footprint import footprint

    if placement.kind == "resident":
        return record.drylocal_bytes + (placement.working_bytes if footprint(spec).offloadable else 0)
    return placement.gpu_bytes


def figures(spec, placement, record: LoadRecord, prepared: Prepared, peak: dict, baseline_free: int,
            free_after: int, on_cuda: bool, tiny: bool) -> dict[str, Any]:
    measured = measured_weights(spec, placement, record, on_cuda)
    expected, source = expected_weights(spec, placement, prepared, on_cuda, tiny)
    cut = int(sum(record.component_bytes.get(name, 0) * (scale - 1) for name, scale in prepared.scale.items()))
    weights = {"measured": measured + cut, "expected": expected, "expected_from": source,
               "loader_measured": record.drylocal_bytes, "host": record.host_bytes, "device": record.device_bytes}
    weights["ratio"] = weights["measured"] / expected if expected else None
    weights["ok"] = expected > 0 and abs(weights["measured"] / expected - 1) <= WEIGHTS_TOLERANCE
    out: dict[str, Any] = {"placement": placement.as_dict(), "precision": record.precision,
                           "load_seconds": record.seconds, "weights": weights}
    declared = reserved(spec, placement, record) + cut
    if on_cuda:
        out["peak"] = {"bytes": peak["peak"] + cut, "allocated": peak["allocated"] + cut, "declared": declared,
                       "ok": peak["peak"] + cut <= declared}
        missing = baseline_free - free_after
        out["unload"] = {"free_before": baseline_free, "free_after": free_after, "missing": missing,
                         "ok": missing <= UNLOAD_SLACK}
    else:
        out["peak"] = {"bytes": peak["peak"], "declared": declared, "ok": None, "what": "peak resident set"}
        out["unload"] = {"resident_after": -free_after, "ok": None}
    if prepared.cut_layers:
        out["extrapolated"] = {name: {"blocks": [kept, full], "weights_scale": prepared.scale.get(name),
                                      "weights_added": cut}
                               for name, (kept, full) in prepared.cut_layers.items()}
    return out


def passed(result: dict) -> bool:
    """Every job done, weights within tolerance, and no judged check (peak, unload, finite) false."""
    if result.get("error") or not result["jobs"] or any("error" in job for job in result["jobs"]):
        return False
    checks = [result.get(name, {}).get("ok") for name in ("peak", "unload", "finite")]
    return result.get("weights", {}).get("ok") is True and all(ok is not False for ok in checks)
