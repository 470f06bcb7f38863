"""The balance a submit reads is one row kept by the ledger's inserts, always equal to the ledger's sum."""

from __future__ import annotations

import random
import sqlite3

import pytest

from engine.accounts import AccountStore
from engine.database import Database
from engine.jobs import JobStore


def _sums(db: Database) -> dict[str, float]:
    return {r["account_id"]: r["s"] for r in db.query("SELECT account_id, SUM(amount) AS s FROM ledger GROUP BY account_id")}


def test_balances_follow_every_charge_refund_and_settlement(tmp_path):
    db = Database(tmp_path / "d.db")
    accounts, jobs = AccountStore(db), JobStore(db)
    people = [accounts.create_account(f"a{i}", tier="premium", balance=1.0) for i in range(3)]
    rng = random.Random(7)
    for _ in range(200):
        account = rng.choice(people)
        job = jobs.create(account, task="txt2embedding", model="m", params={}, inputs={}, price=round(rng.uniform(0, 0.01), 6))
        jobs.start(job.id)
        if rng.random() < 0.3:
            jobs.fail(job.id, "PROCESSING_ERROR", "x")
        else:
            jobs.complete(job.id, result=None, result_file=None, final_price=round(rng.uniform(0, 0.02), 6))
    for account in people:
        assert accounts.balance(account.id) == pytest.approx(_sums(db)[account.id], abs=1e-9)
        assert accounts.balance(account.id) >= 0


def test_a_database_from_before_the_balances_table_is_filled_once(tmp_path):
    path = tmp_path / "old.db"
    with sqlite3.connect(path) as old:  # the ledger as an earlier drylocal left it
        old.executescript(
            "CREATE TABLE accounts (id TEXT PRIMARY KEY, name TEXT NOT NULL, tier TEXT NOT NULL, client_id TEXT NOT NULL UNIQUE,"
            " webhook_secret TEXT NOT NULL, webhook_url TEXT, suspended INTEGER NOT NULL DEFAULT 0, created_at REAL NOT NULL);"
            "CREATE TABLE ledger (id INTEGER PRIMARY KEY AUTOINCREMENT, account_id TEXT NOT NULL, job_id TEXT,"
            " amount REAL NOT NULL, kind TEXT NOT NULL, created_at REAL NOT NULL);"
            "INSERT INTO accounts VALUES ('a', 'a', 'premium', 'c', 's', NULL, 0, 0);"
            "INSERT INTO ledger (account_id, amount, kind, created_at) VALUES ('a', 5.0, 'credit', 0), ('a', -0.25, 'charge', 0);"
        )
    db = Database(path)
    assert AccountStore(db).balance("a") == 4.75
    AccountStore(db).credit("a", 1.0)
    assert AccountStore(Database(path)).balance("a") == 5.75  # reopened: not summed twice


def test_the_job_a_submit_returns_is_the_job_the_store_reads_back(tmp_path):
    db = Database(tmp_path / "d.db")
    accounts, jobs = AccountStore(db), JobStore(db)
    account = accounts.create_account("a", tier="premium", balance=1.0)
    made = jobs.create(account, task="txt2img", model="m", params={"prompt": "p", "size": (1, 2)},
                       inputs={"image": "/x.png"}, price=0.25, webhook_url="https://example.com/h", return_inline=True)
    assert made == jobs.get(made.id)  # (1, 2) comes back a list both ways, as JSON keeps it


def _fill(db: Database) -> None:
    accounts, jobs = AccountStore(db), JobStore(db)
    account = accounts.create_account("a", tier="premium", balance=1.0)
    for _ in range(600):  # about 2,000 WAL pages: past the 1,000 at which a commit would checkpoint
        jobs.create(account, task="txt2embedding", model="m", params={"input": "x" * 8000}, inputs={}, price=0.0)


def test_the_wal_is_checkpointed_by_a_thread_of_its_own_not_by_the_commits(tmp_path):
    import time

    quiet = Database(tmp_path / "quiet.db")
    quiet.checkpoint_in_background(interval=3600)
    _fill(quiet)
    assert (tmp_path / "quiet.db").stat().st_size < 1_000_000  # the submits never paid for a checkpoint
    quiet.close()

    db = Database(tmp_path / "d.db")
    db.checkpoint_in_background(interval=0.2)
    _fill(db)
    deadline = time.monotonic() + 10
    while (tmp_path / "d.db").stat().st_size < 4_000_000:
        assert time.monotonic() < deadline, "the background checkpoint never copied the WAL back"
        time.sleep(0.1)
    db.close()

