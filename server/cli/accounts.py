"""``drylocal keys`` and ``drylocal account``: API keys and accounts, on the data folder's database."""

from __future__ import annotations

import argparse
import sys

from engine import Settings
from engine.accounts import TIERS, AccountStore
from engine.database import open_database

__all__ = ("account_store", "add_parser")


def account_store(settings: Settings) -> AccountStore:
    settings.ensure_dirs()
    return AccountStore(open_database(settings))


def keys(args: argparse.Namespace) -> int:
    settings = Settings.load()
    store = account_store(settings)
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


def account(args: argparse.Namespace) -> int:
    settings = Settings.load()
    store = account_store(settings)
    found = store.find_account(args.name)
    if found is None:
        print(f"no account named {args.name}", file=sys.stderr)
        return 1
    if args.webhook_url is not None:
        from engine.webhooks import WebhookRefused, check_webhook_url

        if args.webhook_url:
            try:
                loopback = settings.webhook_allow_http_loopback and not found.billed
                check_webhook_url(args.webhook_url, loopback, settings.webhook_allowed_hosts)
            except WebhookRefused as exc:
                print(str(exc), file=sys.stderr)
                return 1
        store.set_webhook_url(found.id, args.webhook_url)
        found = store.find_account(args.name)
    print(f"name\t{found.name}\nclient_id\t{found.client_id}\ntier\t{found.tier}\nbalance\t{store.balance(found.id)}")
    print(f"webhook_url\t{found.webhook_url or ''}\nwebhook_secret\t{found.webhook_secret}")
    return 0


def add_parser(commands) -> None:
    parser = commands.add_parser("keys", help="manage API keys")
    actions = parser.add_subparsers(dest="action", required=True)
    create = actions.add_parser("create", help="create a key; prints it alone on one line")
    create.add_argument("name")
    create.add_argument("--tier", choices=TIERS, default="unlimited")
    create.add_argument("--balance", type=float, help="initial credit in USD (default: the initial_balance setting)")
    create.add_argument("--account", help="add the key to this existing account instead of a new one")
    actions.add_parser("list", help="list keys")
    revoke = actions.add_parser("revoke", help="revoke a key by name or prefix")
    revoke.add_argument("name")
    parser.set_defaults(func=keys)

    parser = commands.add_parser("account", help="show an account's client id, tier and balance")
    parser.add_argument("name", nargs="?", default="owner")
    parser.add_argument("--webhook-url", help="set the account's default webhook ('' clears it)")
    parser.set_defaults(func=account)
