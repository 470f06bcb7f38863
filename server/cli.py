"""The ``drylocal`` command: serve the API, manage keys, list models."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from engine import Settings
from engine.accounts import TIERS, AccountStore
from engine.database import Database

__all__ = ("main",)


def _store(settings: Settings) -> AccountStore:
    settings.ensure_dirs()
    return AccountStore(Database(settings.db_path))


def _ensure_owner(settings: Settings) -> None:
    """The first serve creates the local owner's account and prints its key, once."""
    store = _store(settings)
    if store.has_accounts():
        return
    owner = store.create_account("owner", tier="unlimited")
    key = store.create_key(owner, "owner")
    print("drylocal: created the owner API key (shown only this once; `drylocal keys create NAME` makes more):")
    print(key, flush=True)


def cmd_serve(args: argparse.Namespace) -> int:
    import uvicorn

    from server.app import create_app

    overrides = {k: v for k, v in (("host", args.host), ("port", args.port)) if v is not None}
    settings = Settings.load(**overrides)
    _ensure_owner(settings)
    from server import supervisor

    if settings.supervise and not os.environ.get(supervisor.CHILD_ENV):
        limit = settings.memory_limit_bytes
        limit = supervisor.default_memory_limit() if limit is None else limit
        return supervisor.supervise(settings.home, limit)
    if os.environ.get(supervisor.CHILD_ENV):
        supervisor.die_with_parent()
    from model_registry.embedded import provision_embedded

    for slug, path in provision_embedded(settings.models_dir).items():
        print(f"drylocal: {slug} ready from packaged weights ({path})", flush=True)
    print(f"drylocal: serving dryAPI on {settings.base_url}/api/v1/client (data in {settings.home})", flush=True)
    uvicorn.run(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        log_level=args.log_level,
        limit_concurrency=settings.max_connections,
    )
    return 0


def cmd_keys(args: argparse.Namespace) -> int:
    settings = Settings.load()
    store = _store(settings)
    if args.action == "create":
        account = store.find_account(args.account) if args.account else None
        if args.account and account is None:
            print(f"no account named {args.account}", file=sys.stderr)
            return 1
        if account is None:
            balance = settings.initial_balance if args.balance is None else args.balance
            account = store.create_account(args.name, tier=args.tier, balance=balance)
        print(store.create_key(account, args.name))
        return 0
    if args.action == "list":
        for key in store.list_keys():
            state = "revoked" if key.revoked_at else "active"
            print(f"{key.name}\t{key.prefix}…\t{key.account_name}\t{key.tier}\t{state}")
        return 0
    if args.action == "revoke":
        count = store.revoke_key(args.name)
        print(f"revoked {count} key(s)")
        return 0 if count else 1
    return 2


def cmd_account(args: argparse.Namespace) -> int:
    settings = Settings.load()
    store = _store(settings)
    account = store.find_account(args.name)
    if account is None:
        print(f"no account named {args.name}", file=sys.stderr)
        return 1
    if args.webhook_url is not None:
        from engine.webhooks import WebhookRefused, check_webhook_url

        if args.webhook_url:
            try:
                loopback = settings.webhook_allow_http_loopback and not account.billed
                check_webhook_url(args.webhook_url, loopback, settings.webhook_allowed_hosts)
            except WebhookRefused as exc:
                print(str(exc), file=sys.stderr)
                return 1
        store.set_webhook_url(account.id, args.webhook_url)
        account = store.find_account(args.name)
    print(f"name\t{account.name}\nclient_id\t{account.client_id}\ntier\t{account.tier}\nbalance\t{store.balance(account.id)}")
    print(f"webhook_url\t{account.webhook_url or ''}\nwebhook_secret\t{account.webhook_secret}")
    return 0


def _registry(settings: Settings):
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
    return placement["kind"].replace("_", " ") + tiles


def cmd_models(args: argparse.Namespace) -> int:
    from model_registry.footprint import footprint, read_layout
    from model_registry.model_store import disk_bytes, human_bytes

    settings = Settings.load()
    registry = _registry(settings)
    from engine.measurements import MeasurementStore

    measured = MeasurementStore.read(settings.db_path)
    budget = _device_budget(settings, args)
    layout = read_layout()
    models, states = [], []
    for spec in registry.all():
        availability = registry.availability(spec)
        memory, seconds = measured.get(spec.slug, (None, None))
        models.append(
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
        print(json.dumps(models, indent=2))
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
        for m, state in zip(models, states)
    ]
    widths = [max(len(row[i]) for row in (header, *rows)) for i in range(len(header))]
    numeric = {2, 4, 5, 7}  # right-aligned, so sizes and times line up by their units
    for row in (header, *rows):
        cells = [cell.rjust(w) if i in numeric else cell.ljust(w) for i, (cell, w) in enumerate(zip(row, widths))]
        print("  ".join(cells).rstrip())
    return 0


def _stderr_for(slug: str):
    return lambda message: print(f"{slug}: {message}", file=sys.stderr)


def _print_plan(slug: str, plan, free: int, stream) -> None:
    """Each repo's files the loader reads, with what stays on the hub, and the total to download."""
    from model_registry.model_store import human_bytes

    def count(n: int) -> str:
        return f"{n} file{'s' if n != 1 else ''}"

    for part in plan.sources:
        left = ""
        if part.skipped:
            skipped = sum(file.size for file in part.skipped)
            left = f"; {count(len(part.skipped))} ({human_bytes(skipped)}) left on the hub"
        print(f"{slug}: {part.source.repo_id} at commit {part.commit[:7]}: {count(len(part.files))}, "
              f"{human_bytes(part.size_bytes)}{left}", file=stream)
        missing = {file.path for file in part.missing}
        for file in part.files:
            note = "" if file.path in missing else "  (already there, verified)"
            print(f"  {human_bytes(file.size) if file.size else '0 B':>9}  {file.path}{note}", file=stream)
    total = human_bytes(plan.download_bytes) if plan.download_bytes else "nothing"
    print(f"{slug}: {total} to download ({human_bytes(free)} free on the models folder's disk)", file=stream, flush=True)


def cmd_pull(args: argparse.Namespace) -> int:
    from model_registry.model_store import human_bytes
    from model_registry.pull import check_room, free_bytes, install, plan_pull

    settings = Settings.load()
    registry = _registry(settings)
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
            for pulled in install(plan, report=_stderr_for(slug)):
                how = "verified" if pulled.fetched else "already there, verified"
                files = f"{pulled.files} file{'s' if pulled.files != 1 else ''}"
                print(f"{slug}: {pulled.path} ({files}, {human_bytes(pulled.size_bytes)}, {how} at commit {pulled.commit[:7]})")
        except KeyboardInterrupt:
            print(f"{slug}: interrupted; `drylocal pull {slug}` resumes where this stopped", file=sys.stderr)
            return 130
        except Exception as exc:  # one model failing should not stop the others
            print(f"{slug}: could not pull: {exc}", file=sys.stderr)
            status = 1
    return status


def cmd_rm(args: argparse.Namespace) -> int:
    from model_registry import UnknownModel
    from model_registry.model_store import human_bytes, remove_pulled

    settings = Settings.load()
    registry = _registry(settings)
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


def cmd_add(args: argparse.Namespace) -> int:
    from model_registry.model_store import AddRefused, add_user_model

    settings = Settings.load()
    try:
        spec, kind = add_user_model(
            _registry(settings),
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


def cmd_gc(args: argparse.Namespace) -> int:
    from engine.retention import collect

    settings = Settings.load()
    settings.ensure_dirs()
    print(f"drylocal gc: {collect(Database(settings.db_path), settings)}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="drylocal", description="Serve the dryAPI HTTP API from your own GPU.")
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="serve the API")
    serve.add_argument("--host")
    serve.add_argument("--port", type=int)
    serve.add_argument("--log-level", default="info")
    serve.set_defaults(func=cmd_serve)

    gc = commands.add_parser("gc", help="delete expired results, leftover inputs and old job rows now; says what it freed")
    gc.set_defaults(func=cmd_gc)

    keys = commands.add_parser("keys", help="manage API keys")
    key_actions = keys.add_subparsers(dest="action", required=True)
    create = key_actions.add_parser("create", help="create a key; prints it alone on one line")
    create.add_argument("name")
    create.add_argument("--tier", choices=TIERS, default="unlimited")
    create.add_argument("--balance", type=float, help="initial credit in USD (default: the initial_balance setting)")
    create.add_argument("--account", help="add the key to this existing account instead of a new one")
    key_actions.add_parser("list", help="list keys")
    revoke = key_actions.add_parser("revoke", help="revoke a key by name or prefix")
    revoke.add_argument("name")
    keys.set_defaults(func=cmd_keys)

    account = commands.add_parser("account", help="show an account's client id, tier and balance")
    account.add_argument("name", nargs="?", default="owner")
    account.add_argument("--webhook-url", help="set the account's default webhook ('' clears it)")
    account.set_defaults(func=cmd_account)

    models = commands.add_parser("models", help="list the model catalog: installed, size, measured memory, placement")
    models.add_argument("--json", action="store_true", help="print a JSON list instead of the table")
    models.add_argument(
        "--device-memory", type=int, metavar="BYTES",
        help="place every model as on a CUDA card with this much memory (default: this machine's device)",
    )
    models.add_argument(
        "--host-memory", type=int, metavar="BYTES",
        help="with this much RAM (default: this machine's); offloaded weights may take host_memory_fraction of it",
    )
    models.set_defaults(func=cmd_models)

    pull = commands.add_parser("pull", help="download and verify models' checkpoints from the Hugging Face hub")
    pull.add_argument("slugs", nargs="+", metavar="SLUG")
    pull.add_argument("--endpoint", help="a hub mirror (default: $HF_ENDPOINT or huggingface.co)")
    pull.add_argument("--dry-run", action="store_true", help="print the files and the total to download; fetch nothing")
    pull.set_defaults(func=cmd_pull)

    rm = commands.add_parser("rm", help="delete a model's pulled weights from the drylocal models folder")
    rm.add_argument("slug", metavar="SLUG")
    rm.set_defaults(func=cmd_rm)

    add = commands.add_parser("add", help="register your own checkpoint folder as a model (in config.toml)")
    add.add_argument("path", type=Path, metavar="PATH")
    add.add_argument("--slug", required=True, help="the name clients send as `model`")
    add.add_argument("--task", dest="tasks", action="append", metavar="TASK", help="an inference type it serves (repeatable; default: detected)")
    add.add_argument("--backend", help="the loader, when the folder's kind is not detected (see model_registry/backends.py)")
    add.add_argument("--name", help="display name (default: the folder's name)")
    add.add_argument("--quantization", choices=("nf4", "int8", "fp8", "bf16", "fp16", "fp32"), help="precision on a GPU")
    add.set_defaults(func=cmd_add)
    from server import bench

    bench.add_parser(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
