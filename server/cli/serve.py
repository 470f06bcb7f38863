"""``drylocal serve``: the HTTP app under uvicorn, supervised; the first serve creates the owner's key."""

from __future__ import annotations

import argparse
import os

from engine import Settings
from server.cli.accounts import account_store

__all__ = ("add_parser", "ensure_owner")


def ensure_owner(settings: Settings) -> None:
    """The first serve creates the local owner's account and prints its key, once."""
    store = account_store(settings)
    if store.has_accounts():
        return
    owner = store.create_account("owner", tier="unlimited")
    key = store.create_key(owner, "owner")
    print("drylocal: created the owner API key (shown only this once; `drylocal keys create NAME` makes more):")
    print(key, flush=True)


def serve(args: argparse.Namespace) -> int:
    import uvicorn

    from server import supervisor
    from server.app import create_app

    overrides = {k: v for k, v in (("host", args.host), ("port", args.port)) if v is not None}
    settings = Settings.load(**overrides)
    ensure_owner(settings)
    supervised_child = bool(os.environ.get(supervisor.CHILD_ENV))
    if settings.supervise and not supervised_child:
        # This same command line again, as a child the supervisor restarts and holds to the memory limit.
        limit = settings.memory_limit_bytes
        limit = supervisor.default_memory_limit() if limit is None else limit
        return supervisor.supervise(settings.home, limit)
    if supervised_child:
        supervisor.die_with_parent()
    from model_registry.embedded import provision_embedded
    from server.http_protocol import http_protocol

    for slug, path in provision_embedded(settings.models_dir, skip=settings.embedded_skip).items():
        print(f"drylocal: {slug} ready from packaged weights ({path})", flush=True)
    engine_options = {}
    if args.cluster:
        from server.cli.worker import start_cluster

        engine_options["workers"] = start_cluster(settings, args.ray_host, args.ray_port)
    print(f"drylocal: serving dryAPI on {settings.base_url}/api/v1/client (data in {settings.home})", flush=True)
    uvicorn.run(
        create_app(settings, freeze_heap=True, **engine_options),
        host=settings.host,
        port=settings.port,
        log_level=args.log_level,
        limit_concurrency=settings.max_connections,
        http=http_protocol(settings),
    )
    return 0


def add_parser(commands) -> None:
    parser = commands.add_parser("serve", help="serve the API")
    parser.add_argument("--host")
    parser.add_argument("--port", type=int)
    parser.add_argument("--log-level", default="info")
    parser.add_argument("--cluster", action="store_true",
                        help="start a Ray head here and run jobs on every node that joins (pip install drylocal[cluster])")
    parser.add_argument("--ray-host", default="127.0.0.1", help="the address Ray binds: this machine's private address")
    parser.add_argument("--ray-port", type=int, default=6379)
    parser.set_defaults(func=serve)
