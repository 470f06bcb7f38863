"""``drylocal models`` and ``drylocal add``: the catalog as this machine sees it, and your own checkpoints."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from engine import Settings

__all__ = ("add_parser", "load_registry")


def load_registry(settings: Settings):
    from model_registry import ModelRegistry, WeightsLocator

    return ModelRegistry.from_files(WeightsLocator(settings.models_dir), settings.config_file)


def _device_budget(settings: Settings, args: argparse.Namespace):
    """This machine's device budget, as the engine probes it; or, with --device-memory, a CUDA card of that
    size (and with --host-memory, that much RAM), on any machine."""
    from engine.devices import cuda_budget, probe_device

    if args.device_memory is not None:
        card = settings.model_copy(update={"memory_budget_bytes": None})
        if args.host_memory is not None:
            card = card.model_copy(update={"host_memory_budget_bytes": None})
        return cuda_budget(card, "cuda:0", args.device_memory, ram_bytes=args.host_memory)
    budget = probe_device(settings)
    if args.host_memory is not None and budget.device.startswith("cuda"):
        roomy = settings.model_copy(update={"host_memory_budget_bytes": None})
        return cuda_budget(roomy, budget.device, budget.total_bytes, budget.probe_free, ram_bytes=args.host_memory)
    return budget


def _placement_cell(placement: dict) -> str:
    tiles = ", vae tiles" if placement["vae_tiling"] else ""
    encoders = ", quantized encoders" if placement["quantized_encoders"] else ""
    return placement["kind"].replace("_", " ") + encoders + tiles


def models(args: argparse.Namespace) -> int:
    from engine.measurements import MeasurementStore
    from model_registry.footprint import footprint, read_layout
    from model_registry.model_store import disk_bytes, human_bytes

    settings = Settings.load()
    registry = load_registry(settings)
    measured = MeasurementStore.read(settings.db_path)
    budget = _device_budget(settings, args)
    layout = read_layout()
    listed, states = [], []
    for spec in registry.all():
        availability = registry.availability(spec)
        memory, seconds = measured.get(spec.slug, (None, None))
        listed.append(
            {
                "slug": spec.slug,
                "inference_types": list(spec.inference_types),
                "quantization": spec.quantization,
                "installed": availability.installed,
                "size_bytes": disk_bytes(availability.path),
                "path": str(availability.path) if availability.path else None,
                "measured_memory_bytes": memory,
                "load_seconds": seconds,
                "placement": budget.place(footprint(spec, layout)).as_dict(),
            }
        )
        states.append("ready" if availability.runnable else ("installed" if availability.installed else "not installed"))
    if args.json:
        print(json.dumps(listed, indent=2))
        return 0
    where = f"{budget.device}: {human_bytes(budget.budget_bytes)} budget"
    if budget.device.startswith("cuda"):
        where += f", {human_bytes(budget.host_budget_bytes)} of RAM for offloaded weights"
    print(f"placements on {where}")
    header = ("MODEL", "STATE", "SIZE", "QUANT", "MEMORY", "LOAD", "PLACEMENT", "NEEDS", "TASKS")
    rows = [
        (
            m["slug"],
            state,
            human_bytes(m["size_bytes"]),
            m["quantization"],
            human_bytes(m["measured_memory_bytes"]),
            "-" if m["load_seconds"] is None else f"{m['load_seconds']:.1f} s",
            _placement_cell(m["placement"]),
            human_bytes(m["placement"]["gpu_bytes"]),
            ",".join(m["inference_types"]),
        )
        for m, state in zip(listed, states)
    ]
    widths = [max(len(row[i]) for row in (header, *rows)) for i in range(len(header))]
    numeric = {2, 4, 5, 7}  # right-aligned, so sizes and times line up by their units
    for row in (header, *rows):
        cells = [cell.rjust(w) if i in numeric else cell.ljust(w) for i, (cell, w) in enumerate(zip(row, widths))]
        print("  ".join(cells).rstrip())
    return 0


def add(args: argparse.Namespace) -> int:
    from model_registry.model_store import AddRefused, add_user_model

    settings = Settings.load()
    try:
        spec, kind = add_user_model(
            load_registry(settings),
            settings.config_file,
            args.path,
            args.slug,
            tasks=args.tasks,
            backend=args.backend,
            name=args.name,
            quantization=args.quantization,
        )
    except AddRefused as exc:
        print(f"could not add {args.path}: {exc}", file=sys.stderr)
        return 1
    print(f"added {spec.slug}: {kind.description}, backend {spec.backend}, tasks {', '.join(spec.inference_types)}")
    print(f"price and limits copied from {kind.template}; change them in {settings.config_file}")
    return 0


def add_parser(commands) -> None:
    parser = commands.add_parser("models", help="list the model catalog: installed, size, measured memory, placement")
    parser.add_argument("--json", action="store_true", help="print a JSON list instead of the table")
    parser.add_argument(
        "--device-memory", type=int, metavar="BYTES",
        help="place every model as on a CUDA card with this much memory (default: this machine's device)",
    )
    parser.add_argument(
        "--host-memory", type=int, metavar="BYTES",
        help="with this much RAM (default: this machine's); offloaded weights may take host_memory_fraction of it",
    )
    parser.set_defaults(func=models)

    parser = commands.add_parser("add", help="register your own checkpoint folder as a model (in config.toml)")
    parser.add_argument("path", type=Path, metavar="PATH")
    parser.add_argument("--slug", required=True, help="the name clients send as `model`")
    parser.add_argument("--task", dest="tasks", action="append", metavar="TASK",
                        help="an inference type it serves (repeatable; default: detected)")
    parser.add_argument("--backend", help="the loader, when the folder's kind is not detected (see model_registry/backends.py)")
    parser.add_argument("--name", help="display name (default: the folder's name)")
    parser.add_argument("--quantization", choices=("nf4", "int8", "fp8", "bf16", "fp16", "fp32"), help="precision on a GPU")
    parser.set_defaults(func=add)
