"""The job store's batch transitions, which the worker uses for a micro-batch: ``start_all`` and
``complete_all`` do what ``start`` and ``complete`` do for each job, in one transaction."""

from __future__ import annotations

import pytest

from engine.accounts import AccountStore
from engine.database import Database
from engine.jobs import Completion, JobStore


def _sums(db: Database) -> dict[str, float]:
    return {r["account_id"]: r["s"] for r in db.query("SELECT account_id, SUM(amount) AS s FROM ledger GROUP BY account_id")}


def _commits(db: Database) -> list[str]:
    seen: list[str] = []
    db._conn.set_trace_callback(lambda sql: seen.append(sql) if sql.strip().upper() == "COMMIT" else None)
    return seen


def test_a_pass_starts_in_one_commit_and_only_its_pending_jobs_start(tmp_path):
    db = Database(tmp_path / "d.db")
    accounts, jobs = AccountStore(db), JobStore(db)
    account = accounts.create_account("batch", tier="premium", balance=1.0)
    made = [jobs.create(account, task="txt2embedding", model="m", params={"i": i}, inputs={}, price=0.1) for i in range(4)]
    jobs.start(made[2].id)  # already running: not started again
    jobs.fail(made[3].id, "PROCESSING_ERROR", "gone")
    commits = _commits(db)
    started = jobs.start_all([made[1].id, made[0].id, made[2].id, made[3].id, "no-such-job"])
    db._conn.set_trace_callback(None)
    assert len(commits) == 1
    assert [job.id for job in started] == [made[1].id, made[0].id]
    assert [(job.status, job.attempts, job.params) for job in started] == [("processing", 1, {"i": 1}), ("processing", 1, {"i": 0})]
    assert all(job.started_at is not None for job in started)
    assert jobs.get(made[2].id).attempts == 1 and jobs.get(made[3].id).status == "error"
    assert jobs.start_all([]) == [] and jobs.start_all([made[0].id]) == []


def test_a_passes_jobs_end_in_one_commit_each_settled_and_a_failed_one_left_alone(tmp_path):
    """The worker ends a micro-batch's jobs with ``complete_all``: one transaction, the same outcome per job as
    ``complete`` (its status, its settlement), and a job that ended meanwhile (failed, or run out) untouched."""
    db = Database(tmp_path / "d.db")
    accounts, jobs = AccountStore(db), JobStore(db)
    account = accounts.create_account("batch", tier="premium", balance=1.0)
    made = [jobs.create(account, task="txt2embedding", model="m", params={}, inputs={}, price=0.1) for _ in range(4)]
    for job in made:
        jobs.start(job.id)
    jobs.fail(made[1].id, "WORKER_TIMEOUT", "late")
    commits = _commits(db)
    ended = jobs.complete_all([Completion(job.id, f"[{i}]", None, final_price=0.05 * i) for i, job in enumerate(made)])
    db._conn.set_trace_callback(None)
    assert [(job.id, job.status, previous) for job, previous in ended] == [
        (made[0].id, "done", "processing"), (made[2].id, "done", "processing"), (made[3].id, "done", "processing"),
    ]
    assert [job.result for job, _ in ended] == ["[0]", "[2]", "[3]"]  # read back as they stand
    assert len(commits) == 1
    stored = [jobs.get(job.id) for job in made]
    assert [s.status for s in stored] == ["done", "error", "done", "done"]
    assert [s.result for s in stored] == ["[0]", None, "[2]", "[3]"]
    assert [s.charged for i, s in enumerate(stored) if i != 1] == [pytest.approx(0.0), pytest.approx(0.1), pytest.approx(0.15)]
    assert accounts.balance(account.id) == pytest.approx(1.0 - 0.0 - 0.1 - 0.15)
    assert accounts.balance(account.id) == pytest.approx(_sums(db)[account.id], abs=1e-9)
