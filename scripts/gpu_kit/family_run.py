"""One family, start to end, in the process scripts/gpu_check.py started for it.

1. Its folder is prepared under a fresh ``$DRYLOCAL_HOME/models/<slug>/`` (folders.py), its inputs generated.
2. drylocal serves on 127.0.0.1 (server/harness.ServerThread, inference in this process so the stand-in is in
   force where weights are read) with the catalog's row for the slug (tiny: its size limits relaxed), the
   device budget as asked, and the worker's ``load_fn`` observed (probes.LoadRecorder).
3. A warm-up job makes the worker load the model; the timed jobs follow, each submitted and polled to its end
   through the API. The device's peak is measured over the timed jobs.
4. Where the family has one, the raw library call runs the direct job on the model drylocal loaded (direct.py).
5. The server stops, its worker unloads the model; the free memory must be back.

Everything is recorded in one JSON object (report.py reads it); an exception is recorded, not raised.
"""

from __future__ import annotations

import contextlib
import importlib
import io
import json
import logging
import statistics
import sys
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from scripts.gpu_kit.families import Family, Job
from scripts.gpu_kit.folders import Prepared, stored_weight_bytes
from scripts.gpu_kit.inputs import materialise
from scripts.gpu_kit.probes import DeviceProbe, FiniteWatch, LoadRecorder, finite_numbers
from scripts.gpu_kit.verdicts import API_GOAL, figures, folder_of, passed

__all__ = ("Options", "run_family")


@dataclass(frozen=True)
class Options:
    tiny: bool
    work: Path
    """This family's scratch folder (its drylocal home, its inputs)."""
    inputs: Path
    """Generated inputs shared by the families (speech is costly to synthesise)."""
    budget_bytes: int | None = None
    plant: str | None = None
    """A planted failure, for the kit's own tests: ``raise`` (the family raises) or ``nan`` (its output is NaN)."""
    device: str | None = None
    """None: ``cuda`` at full size, ``cpu`` tiny. A full-size family on the CPU (slow) checks the full path here."""

    @property
    def on(self) -> str:
        return self.device or ("cpu" if self.tiny else "cuda")


def _materialise(job: Job, options: Options) -> list[tuple[str, Path]]:
    return materialise(job, options.work / "inputs", options.inputs)


# ------------------------------------------------------------------ the row and the server


def _row(family: Family, options: Options, prepared: Prepared):
    """The catalog's row for the slug; tiny, with its size limits relaxed and its weights the tiny folder's
    (the loaders that reserve ``vram_bytes`` as working memory keep it: RRDBNet sizes its tiles by it)."""
    import msgspec

    from model_registry.catalog import builtin_specs
    from model_registry.weight_memory import RESERVING_BACKENDS

    spec = next(s for s in builtin_specs() if s.slug == family.slug)
    if not options.tiny:
        return spec
    info = msgspec.structs.replace(spec.info, limits={**spec.info.limits, **family.tiny_limits},
                                   defaults={**spec.info.defaults, **family.tiny_defaults})
    tiny_bytes = max(1, stored_weight_bytes(folder_of(prepared), 4))
    vram = max(spec.vram_bytes, tiny_bytes) if spec.backend in RESERVING_BACKENDS else tiny_bytes
    return msgspec.structs.replace(spec, info=info, memory={}, vram_bytes=vram)


def _settings(options: Options, home: Path, device: str):
    from engine.settings import Settings

    return Settings.load(
        home=home, device=device, memory_budget_bytes=options.budget_bytes, isolate_executor=False,
        keep_alive_seconds=-1, gc_interval_seconds=0, job_time_limit_seconds=0, rate_limits_enabled=False,
    )


def _submit(client, job: Job, slug: str, files: list[tuple[str, Path]]) -> dict:
    """Submit and poll to the end, as a client does; a refusal or a failed job raises with drylocal's words."""
    import httpx

    if files:
        data = {k: str(v).lower() if isinstance(v, bool) else str(v) for k, v in job.fields.items()}
        request = {"data": {**data, "model": slug}, "files": [(n, (p.name, p.read_bytes())) for n, p in files]}
    else:
        request = {"json": {**job.fields, "model": slug}}
    try:
        request_id = client.submit(job.route, **request)
    except httpx.HTTPStatusError as exc:
        raise RuntimeError(f"{job.route} refused ({exc.response.status_code}): {exc.response.text[:1000]}") from None
    data = client.wait(request_id, poll=0.05)
    if data["status"] != "done":
        raise RuntimeError(f"{job.route} failed: {data.get('error') or data}")
    return data


def _delivered(client, data: dict) -> tuple[bool, float | None]:
    """Whether the delivered result opens and holds no NaN (images decode, JSON numbers and audio samples are
    finite), and for audio its length in seconds."""
    body = client.http.get(data["result_url"]).content if data.get("result_url") else b""
    text = data.get("result")
    if isinstance(text, str) and text[:1] in "[{":
        return finite_numbers(json.loads(text)), None
    if body[:8] == b"\x89PNG\r\n\x1a\n":
        from PIL import Image as PILImage

        PILImage.open(io.BytesIO(body)).load()
    elif body[:4] in (b"RIFF", b"fLaC", b"OggS"):
        import numpy as np
        import soundfile

        samples, rate = soundfile.read(io.BytesIO(body), dtype="float32")
        return bool(np.isfinite(samples).all()), len(samples) / rate
    return True, None


# ------------------------------------------------------------------ the run


def _timed_jobs(client, family: Family, options: Options, probe: DeviceProbe, recorder: LoadRecorder,
                prepared: Prepared, result: dict) -> bool:
    """Each job ``repeat`` times through the API; its mean submit-to-done time, per unit, and with a cut
    component the time extrapolated to the full one (the component's forward time times its block ratio)."""
    finite = True
    growth = {name: full / kept - 1 for name, (kept, full) in prepared.cut_layers.items()}
    for job in family.tiny_jobs if options.tiny else family.jobs:
        files = _materialise(job, options)
        row: dict[str, Any] = {"label": job.label, "route": job.route, "per": job.per, "count": job.count, "seconds": []}
        result["jobs"].append(row)
        added = []
        for _ in range(job.repeat):
            for timer in recorder.timers.values():
                timer.seconds = 0.0
            started = time.perf_counter()
            try:
                data = _submit(client, job, family.slug, files)
            except Exception as exc:  # a failed job is a finding; the family's other jobs still run
                row["error"] = str(exc)[:2000]
                break
            probe.sync()
            row["seconds"].append(time.perf_counter() - started)
            added.append(sum(recorder.timers[name].seconds * g for name, g in growth.items() if name in recorder.timers))
            ok, audio_seconds = _delivered(client, data)
            finite = ok and finite
            if job.per == "second of speech" and audio_seconds:
                row.setdefault("output_seconds", []).append(audio_seconds)
        if row.get("output_seconds"):
            row["count"] = statistics.mean(row["output_seconds"])  # speech: per second of what it said
        if row["seconds"]:
            row["mean"] = statistics.mean(row["seconds"])
            if growth:
                row["measured_mean"] = row["mean"]
                row["mean"] += statistics.mean(added)
                row["extrapolated"] = True
            row["per_unit"] = row["mean"] / row["count"]
    return finite


def _plant(options: Options, recorder: LoadRecorder) -> None:
    """A planted failure, for the kit's own tests: the check must report it, not pass over it."""
    if options.plant == "raise":
        raise RuntimeError("planted failure (--plant raise)")
    if options.plant == "nan":
        load = recorder._load

        def poisoned(spec, device, placement):
            import torch

            loaded = load(spec, device, placement)
            for module in _modules(loaded.handle):
                for layer in module.modules():
                    if isinstance(layer, (torch.nn.Linear, torch.nn.Conv2d)):
                        layer.register_forward_hook(lambda m, i, o: o * float("nan"))
            return loaded

        recorder._load = poisoned


def _modules(handle):
    from scripts.gpu_kit.probes import torch_modules

    return list(torch_modules(handle).values())


def run_family(family: Family, options: Options) -> dict:
    result: dict[str, Any] = {
        "family": family.name, "slug": family.slug, "set": "core" if family.core else "optional",
        "mode": "tiny" if options.tiny else "full", "status": "fail", "error": None, "jobs": [], "note": family.note,
    }
    started = time.perf_counter()
    try:
        _run(family, options, result)
    except BaseException as exc:  # recorded, so the report names what broke
        result["error"] = "".join(traceback.format_exception_only(type(exc), exc)).strip()[:4000]
        result["traceback"] = traceback.format_exc()[-8000:]
    result["wall_seconds"] = time.perf_counter() - started
    result["status"] = "pass" if passed(result) else "fail"
    return result


def _run(family: Family, options: Options, result: dict) -> None:
    import torch

    from model_registry import ModelRegistry, WeightsLocator
    from model_registry.catalog import builtin_specs
    from scripts.gpu_kit.random_weights import random_weights
    from server.harness import ServerThread

    if family.folder is None:
        raise RuntimeError(f"{family.name} has no {'tiny' if options.tiny else 'full-size'} folder")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # a line per status poll would bury the log
    device = options.on
    if options.tiny:
        for module_name, name, value in family.tiny_constants:
            setattr(importlib.import_module(module_name), name, value)
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeError("a full-size run needs CUDA; torch sees none (use --tiny, or --device cpu, on the CPU)")
    result["device"] = torch.cuda.get_device_name(0) if device.startswith("cuda") else "cpu"
    probe = DeviceProbe(device)
    stage = _Stages(result)
    home = options.work / "home"
    with stage("prepare"):
        prepared = family.folder.prepare(home / "models" / family.slug, full=not options.tiny)
        spec = _row(family, options, prepared)
        for job in (family.tiny_warmup, *family.tiny_jobs) if options.tiny else (family.warmup, *family.jobs):
            _materialise(job, options)
    registry = ModelRegistry([spec if s.slug == spec.slug else s for s in builtin_specs()], WeightsLocator(home / "models"))
    watch = FiniteWatch()
    recorder = LoadRecorder(registry.load, probe, watch, timed=tuple(prepared.cut_layers))
    _plant(options, recorder)
    settings = _settings(options, home, device)
    with random_weights():
        with stage("serve"):
            server = ServerThread(settings, registry=registry, load_fn=recorder).start()
        try:
            client = server.client()
            warmup = family.tiny_warmup if options.tiny else family.warmup
            with stage("warm-up (load + first job)"):
                _submit(client, warmup, family.slug, _materialise(warmup, options))
            if not recorder.records:
                raise RuntimeError("the warm-up job finished without the worker loading the model")
            placement = server.engine.placement(family.slug)
            probe.start_peak()
            with stage("timed jobs"):
                finite = _timed_jobs(client, family, options, probe, recorder, prepared, result)
            peak = probe.stop_peak()
            if family.direct is not None:
                with stage("direct"):
                    result["api_vs_direct"] = _direct(family, options, recorder, result)
        finally:
            with stage("stop and unload"):
                server.close()
        # The server has stopped: its worker unloaded the model (GpuWorker.stop -> _unload).
        free_after = probe.free()
        record = recorder.records[0]
        result.update(figures(spec, placement, record, prepared, peak, probe.baseline_free, free_after,
                              on_cuda=probe.cuda, tiny=options.tiny))
        result["finite"] = {"ok": finite and not watch.bad, "bad": sorted(set(watch.bad)), "watched": record.watched,
                            "calls": watch.calls}


class _Stages:
    """Wall seconds of each stage of the family's run, into ``result["stages"]``."""

    def __init__(self, result: dict) -> None:
        self.seconds: dict[str, float] = result.setdefault("stages", {})

    @contextlib.contextmanager
    def __call__(self, name: str) -> Iterator[None]:
        started = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] = round(time.perf_counter() - started, 3)


def _direct(family: Family, options: Options, recorder: LoadRecorder, result: dict) -> dict:
    """The family's direct job through the raw library call on the model drylocal loaded, while it is loaded."""
    from scripts.gpu_kit.direct import DIRECT

    job = next(j for j in (family.tiny_jobs if options.tiny else family.jobs) if j.direct)
    api = next(row for row in result["jobs"] if row["label"] == job.label)
    loaded = recorder.last_loaded()
    if loaded is None:
        raise RuntimeError("the model was unloaded before the direct call")
    files = {name: [path] for name, path in _materialise(job, options)}
    seconds = DIRECT[family.direct](loaded, job, files, recorder.probe)
    out = {"job": job.label, "api_seconds": api.get("mean"), "direct_seconds": seconds, "goal": API_GOAL,
           "how": "the model drylocal loaded, called directly in the same process"}
    if api.get("mean"):
        out["ratio"] = api["mean"] / seconds
        out["goal_met"] = out["ratio"] <= API_GOAL
    if job.per == "audio second":
        out["api_rtf"] = api["mean"] / job.count if api.get("mean") else None
        out["direct_rtf"] = seconds / job.count
    return out


def main(argv: list[str]) -> int:
    """``family_run FAMILY OPTIONS_JSON RESULT_JSON``: what scripts/gpu_check.py runs in each family's process."""
    from scripts.gpu_kit.families import family_named

    family = family_named(argv[0])
    raw = json.loads(argv[1])
    options = Options(tiny=raw["tiny"], work=Path(raw["work"]), inputs=Path(raw["inputs"]),
                      budget_bytes=raw.get("budget_bytes"), plant=raw.get("plant"), device=raw.get("device"))
    result = run_family(family, options)
    Path(argv[2]).write_text(json.dumps(result, indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
