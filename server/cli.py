"""The ``drylocal`` command: serve the API, manage keys, list models."""

from __future__ import annotations

import argparse
import sys

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
    from model_registry.embedded import provision_embedded

    for slug, path in provision_embedded(settings.models_dir).items():
        print(f"drylocal: {slug} ready from packaged weights ({path})", flush=True)
    print(f"drylocal: serving dryAPI on {settings.base_url}/api/v1/client (data in {settings.home})", flush=True)
    uvicorn.run(create_app(settings), host=settings.host, port=settings.port, log_level=args.log_level)
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
                check_webhook_url(args.webhook_url, settings.webhook_allow_http_loopback)
            except WebhookRefused as exc:
                print(str(exc), file=sys.stderr)
                return 1
        store.set_webhook_url(account.id, args.webhook_url)
        account = store.find_account(args.name)
    print(f"name\t{account.name}\nclient_id\t{account.client_id}\ntier\t{account.tier}\nbalance\t{store.balance(account.id)}")
    print(f"webhook_url\t{account.webhook_url or ''}\nwebhook_secret\t{account.webhook_secret}")
    return 0


def cmd_models(args: argparse.Namespace) -> int:
    from model_registry import ModelRegistry, WeightsLocator

    settings = Settings.load()
    registry = ModelRegistry.from_files(WeightsLocator(settings.models_dir), settings.config_file)
    for spec in registry.all():
        availability = registry.availability(spec)
        state = "ready" if availability.runnable else ("installed" if availability.installed else "not installed")
        print(f"{spec.slug:32} {','.join(spec.inference_types):40} {spec.quantization:6} {state}")
    return 0


def cmd_pull(args: argparse.Namespace) -> int:
    from model_registry import ModelRegistry, WeightsLocator
    from model_registry.pull import pull

    settings = Settings.load()
    settings.ensure_dirs()
    registry = ModelRegistry.from_files(WeightsLocator(settings.models_dir), settings.config_file)
    status = 0
    for slug in args.slugs:
        try:
            for path in pull(registry, slug, endpoint=args.endpoint):
                print(f"{slug}: {path}")
        except Exception as exc:  # one model failing should not stop the others
            print(f"{slug}: could not pull: {exc}", file=sys.stderr)
            status = 1
    return status


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="drylocal", description="Serve the dryAPI HTTP API from your own GPU.")
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="serve the API")
    serve.add_argument("--host")
    serve.add_argument("--port", type=int)
    serve.add_argument("--log-level", default="info")
    serve.set_defaults(func=cmd_serve)

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

    models = commands.add_parser("models", help="list the model catalog and what is installed")
    models.set_defaults(func=cmd_models)

    pull = commands.add_parser("pull", help="download models' checkpoints from the Hugging Face hub")
    pull.add_argument("slugs", nargs="+", metavar="SLUG")
    pull.add_argument("--endpoint", help="a hub mirror (default: $HF_ENDPOINT or huggingface.co)")
    pull.set_defaults(func=cmd_pull)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
