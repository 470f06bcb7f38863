"""Accounts, their API keys (stored as hashes only) and the balance ledger."""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
import uuid
from dataclasses import dataclass

from engine.database import Database
from engine.errors import Forbidden, Unauthorized

__all__ = ("Account", "AccountStore", "ApiKeyInfo", "TIERS")

TIERS = ("basic", "premium", "unlimited")
"""basic/premium follow the rate-limit tables of limits-and-quotas.md; unlimited is the local owner:
no rate limits and no debits (each job's dryAPI price is still recorded)."""

_KEY_PREFIX = "dl_"


@dataclass(frozen=True)
class Account:
    id: str
    name: str
    tier: str
    client_id: str
    webhook_secret: str
    webhook_url: str | None
    suspended: bool

    @property
    def billed(self) -> bool:
        return self.tier != "unlimited"


@dataclass(frozen=True)
class ApiKeyInfo:
    id: str
    name: str
    prefix: str
    account_name: str
    tier: str
    created_at: float
    revoked_at: float | None


def _hash(raw_key: str) -> str:
    return hashlib.sha256(raw_key.encode()).hexdigest()


class AccountStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    # ---------------------------------------------------------------- accounts
    def create_account(self, name: str, tier: str = "unlimited", balance: float = 0.0) -> Account:
        if tier not in TIERS:
            raise ValueError(f"tier must be one of {', '.join(TIERS)}")
        account_id = str(uuid.uuid4())
        now = time.time()
        with self.db.transaction() as db:
            db.execute(
                "INSERT INTO accounts (id, name, tier, client_id, webhook_secret, created_at) VALUES (?,?,?,?,?,?)",
                (account_id, name, tier, str(secrets.randbelow(9 * 10**8) + 10**8), secrets.token_hex(32), now),
            )
            if balance:
                db.execute(
                    "INSERT INTO ledger (account_id, amount, kind, created_at) VALUES (?,?,?,?)",
                    (account_id, balance, "credit", now),
                )
        return self.get_account(account_id)

    def get_account(self, account_id: str) -> Account:
        row = self.db.query_one("SELECT * FROM accounts WHERE id = ?", (account_id,))
        if row is None:
            raise KeyError(account_id)
        return _account(row)

    def find_account(self, name: str) -> Account | None:
        row = self.db.query_one("SELECT * FROM accounts WHERE name = ? ORDER BY created_at LIMIT 1", (name,))
        return _account(row) if row else None

    def has_accounts(self) -> bool:
        return self.db.query_one("SELECT 1 FROM accounts LIMIT 1") is not None

    # ---------------------------------------------------------------- keys
    def create_key(self, account: Account, name: str) -> str:
        """A new key for ``account``; the raw key is returned once and never stored."""
        raw = _KEY_PREFIX + secrets.token_urlsafe(32)
        self.db.execute(
            "INSERT INTO api_keys (id, account_id, name, key_hash, prefix, created_at) VALUES (?,?,?,?,?,?)",
            (str(uuid.uuid4()), account.id, name, _hash(raw), raw[:10], time.time()),
        )
        return raw

    def authenticate(self, raw_key: str | None) -> Account:
        if not raw_key:
            raise Unauthorized()
        digest = _hash(raw_key)
        row = self.db.query_one(
            "SELECT k.key_hash, k.revoked_at, a.* FROM api_keys k JOIN accounts a ON a.id = k.account_id "
            "WHERE k.key_hash = ?",
            (digest,),
        )
        # The lookup is by hash, so timing reveals nothing of the key; the compare guards the row anyway.
        if row is None or not hmac.compare_digest(row["key_hash"], digest) or row["revoked_at"] is not None:
            raise Unauthorized()
        account = _account(row)
        if account.suspended:
            raise Forbidden("Your account has been suspended.")
        return account

    @staticmethod
    def digest(raw_key: str) -> str:
        """What is stored of a key, and what a session authorized by it remembers."""
        return _hash(raw_key)

    def revoked(self, digests) -> set[str]:
        """Those of ``digests`` whose keys are revoked (or gone)."""
        wanted = [d for d in set(digests) if d]
        if not wanted:
            return set()
        marks = ",".join("?" * len(wanted))
        active = {
            row["key_hash"]
            for row in self.db.query(f"SELECT key_hash FROM api_keys WHERE revoked_at IS NULL AND key_hash IN ({marks})", tuple(wanted))
        }
        return set(wanted) - active

    def revocations(self, account_id: str) -> int:
        """How many of the account's keys were ever revoked: part of every result URL's signature, so a
        revocation ends the URLs handed out before it."""
        row = self.db.query_one("SELECT COUNT(*) AS n FROM api_keys WHERE account_id = ? AND revoked_at IS NOT NULL", (account_id,))
        return int(row["n"]) if row else 0

    def list_keys(self) -> list[ApiKeyInfo]:
        rows = self.db.query(
            "SELECT k.*, a.name AS account_name, a.tier FROM api_keys k JOIN accounts a ON a.id = k.account_id "
            "ORDER BY k.created_at"
        )
        return [
            ApiKeyInfo(r["id"], r["name"], r["prefix"], r["account_name"], r["tier"], r["created_at"], r["revoked_at"])
            for r in rows
        ]

    def revoke_key(self, name_or_prefix: str) -> int:
        return self.db.execute(
            "UPDATE api_keys SET revoked_at = ? WHERE revoked_at IS NULL AND (name = ? OR prefix = ? OR id = ?)",
            (time.time(), name_or_prefix, name_or_prefix, name_or_prefix),
        )

    # ---------------------------------------------------------------- ledger
    def set_webhook_url(self, account_id: str, url: str | None) -> None:
        """The account's default webhook, used by jobs that name none."""
        self.db.execute("UPDATE accounts SET webhook_url = ? WHERE id = ?", (url or None, account_id))

    def balance(self, account_id: str) -> float:
        row = self.db.query_one("SELECT COALESCE((SELECT amount FROM balances WHERE account_id = ?), 0) AS b", (account_id,))
        return round(float(row["b"]), 6)

    def credit(self, account_id: str, amount: float, kind: str = "credit") -> None:
        self.db.execute(
            "INSERT INTO ledger (account_id, amount, kind, created_at) VALUES (?,?,?,?)",
            (account_id, amount, kind, time.time()),
        )


def _account(row) -> Account:
    return Account(
        id=row["id"],
        name=row["name"],
        tier=row["tier"],
        client_id=row["client_id"],
        webhook_secret=row["webhook_secret"],
        webhook_url=row["webhook_url"],
        suspended=bool(row["suspended"]),
    )
