"""``drylocal pull`` and ``drylocal rm``: models' checkpoints from the Hugging Face hub into the models
folder (only the files the loader reads, verified), and out of it again."""

from __future__ import annotations

import argparse
import sys

from engine import Settings
from server.cli.models import load_registry

__all__ = ("add_parser",)


def _files(n: int) -> str:
    return f"{n} file{'s' if n != 1 else ''}"


def _print_plan(slug: str, plan, free: int, stream) -> None:
    """Each repo's files the loader reads, with what stays on the hub, and the total to download."""
    from model_registry.model_store import human_bytes

    for part in plan.sources:
        left = ""
        if part.skipped:
            skipped = sum(file.size for file in part.skipped)
            left = f"; {_files(len(part.skipped))} ({human_bytes(skipped)}) left on the hub"
        print(f"{slug}: {part.source.repo_id} at commit {part.commit[:7]}: {_files(len(part.files))}, "
              f"{human_bytes(part.size_bytes)}{left}", file=stream)
        missing = {file.path for file in part.missing}
        for file in part.files:
            note = "" if file.path in missing else "  (already there, verified)"
            print(f"  {human_bytes(file.size) if file.size else '0 B':>9}  {file.path}{note}", file=stream)
    total = human_bytes(plan.download_bytes) if plan.download_bytes else "nothing"
    print(f"{slug}: {total} to download ({human_bytes(free)} free on the models folder's disk)", file=stream, flush=True)


def pull(args: argparse.Namespace) -> int:
    from model_registry.model_store import human_bytes
    from model_registry.pull import check_room, free_bytes, install, plan_pull

    settings = Settings.load()
    registry = load_registry(settings)
    status = 0
    for slug in args.slugs:
        try:
            plan = plan_pull(registry, slug, endpoint=args.endpoint)
            free = free_bytes(settings.models_dir)
            # The plan is what a dry run answers; before a download it is progress, on stderr with the bars.
            _print_plan(slug, plan, free, sys.stdout if args.dry_run else sys.stderr)
            if args.dry_run:
                continue
            check_room(plan, free)
            settings.ensure_dirs()
            for pulled in install(plan, report=lambda message, slug=slug: print(f"{slug}: {message}", file=sys.stderr)):
                how = "verified" if pulled.fetched else "already there, verified"
                print(f"{slug}: {pulled.path} ({_files(pulled.files)}, {human_bytes(pulled.size_bytes)}, "
                      f"{how} at commit {pulled.commit[:7]})")
        except KeyboardInterrupt:
            print(f"{slug}: interrupted; `drylocal pull {slug}` resumes where this stopped", file=sys.stderr)
            return 130
        except Exception as exc:  # one model failing should not stop the others
            print(f"{slug}: could not pull: {exc}", file=sys.stderr)
            status = 1
    return status


def rm(args: argparse.Namespace) -> int:
    from model_registry import UnknownModel
    from model_registry.model_store import human_bytes, remove_pulled

    settings = Settings.load()
    registry = load_registry(settings)
    try:
        spec = registry.get(args.slug)
    except UnknownModel as exc:
        print(str(exc), file=sys.stderr)
        return 1
    removal = remove_pulled(registry, spec)
    for path, size in removal.removed:
        print(f"removed {path} ({human_bytes(size)})")
    for path, why in removal.kept:
        print(f"left {path}: {why}")
    if not removal.removed:
        print(f"{spec.slug}: nothing of it in {settings.models_dir} to remove", file=sys.stderr)
        return 1
    print(f"{spec.slug}: freed {human_bytes(removal.freed_bytes)}")
    return 0


def add_parser(commands) -> None:
    parser = commands.add_parser("pull", help="download and verify models' checkpoints from the Hugging Face hub")
    parser.add_argument("slugs", nargs="+", metavar="SLUG")
    parser.add_argument("--endpoint", help="a hub mirror (default: $HF_ENDPOINT or huggingface.co)")
    parser.add_argument("--dry-run", action="store_true", help="print the files and the total to download; fetch nothing")
    parser.set_defaults(func=pull)

    parser = commands.add_parser("rm", help="delete a model's pulled weights from the drylocal models folder")
    parser.add_argument("slug", metavar="SLUG")
    parser.set_defaults(func=rm)
