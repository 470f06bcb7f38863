"""The durable job store. A job is written ``pending`` (and its price debited) before its id is returned.

Status flow: pending -> processing -> in_progress (repeated) -> done | error. Every transition is a
guarded UPDATE, so a late progress report can never reopen a finished job. ``in_progress`` is a
WebSocket-event status only: the REST API reports it as ``processing`` (``Job.public_status``).
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine.accounts import Account
from engine.database import Database
from engine.errors import InsufficientBalance
from engine.redaction import redact_paths

__all__ = ("ACTIVE", "PUBLIC_STATUSES", "TERMINAL", "Completion", "Job", "JobOrder", "JobStore")

ACTIVE = ("processing", "in_progress")
TERMINAL = ("done", "error")
PUBLIC_STATUSES = ("pending", "processing", "done", "error")
"""What the hosted REST API answers; the real clients validate against exactly these four."""


@dataclass
class Job:
    id: str
    account_id: str
    task: str
    model: str
    params: dict[str, Any]
    inputs: dict[str, Any]
    status: str
    progress: float
    price: float
    charged: float
    created_at: float
    webhook_url: str | None = None
    return_inline: bool = False
    attempts: int = 0
    preview: str | None = None
    result: str | None = None
    result_file: str | None = None
    result_alt: dict[str, str] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)
    error_code: str | None = None
    error_message: str | None = None
    started_at: float | None = None
    finished_at: float | None = None

    @property
    def finished(self) -> bool:
        return self.status in TERMINAL

    @property
    def public_status(self) -> str:
        return "processing" if self.status == "in_progress" else self.status


@dataclass(frozen=True)
class Completion:
    """A job's end as ``JobStore.complete`` records it."""

    job_id: str
    result: str | None
    result_file: str | None
    result_alt: dict[str, str] | None = None
    meta: dict[str, Any] | None = None
    final_price: float | None = None


@dataclass(frozen=True)
class JobOrder:
    """A job to write as ``pending``, as ``JobStore.create_all`` takes it."""

    account: Account
    task: str
    model: str
    params: dict[str, Any]
    inputs: dict[str, Any]
    price: float
    job_id: str
    webhook_url: str | None = None
    return_inline: bool = False


class JobStore:
    def __init__(self, db: Database, home: Path | None = None) -> None:
        self.db = db
        self.home = home
        """The data folder, named ``$DRYLOCAL_HOME`` in the failure messages clients read."""

    def create(
        self,
        account: Account,
        *,
        task: str,
        model: str,
        params: dict[str, Any],
        inputs: dict[str, Any],
        price: float,
        webhook_url: str | None = None,
        return_inline: bool = False,
        job_id: str | None = None,
    ) -> Job:
        """Insert the job and debit its price in one transaction; refuses when the balance is short."""
        outcome = self.create_all([JobOrder(
            account, task=task, model=model, params=params, inputs=inputs, price=price, webhook_url=webhook_url,
            return_inline=return_inline, job_id=job_id or str(uuid.uuid4()),
        )])[0]
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome

    def create_all(self, orders: list[JobOrder]) -> list[Job | Exception]:
        """``create`` for each order, in one transaction (a group commit: one commit, not one each); an order
        whose account is short gets InsufficientBalance and writes nothing. The orders are debited in turn, so
        the later ones see the earlier ones' charges. Any other failure rolls the group back and each order
        is written again on its own, so one bad order fails alone, its outcome the exception (a lone order's
        is raised); a group the failed commit wrote all the same is answered as written."""
        now = time.time()
        try:
            with self.db.transaction() as db:
                outcomes = [self._write(db, order, now) for order in orders]
        except Exception:
            written = self._written_at(orders, now)
            if len(orders) == 1:
                if written:
                    return [written[orders[0].job_id]]
                raise
            # Where the commit did take the group, an order it left out was refused for its balance, which
            # writing it alone answers again: nothing is written twice.
            return [written.get(order.job_id) or self._one_alone(order) for order in orders]
        return outcomes

    def _written_at(self, orders: list[JobOrder], now: float) -> dict[str, Job]:
        """The orders' jobs, by id, that a failed create_all wrote nonetheless. A commit can be made and its
        answer lost (PostgreSQL's connection dropped after COMMIT): retrying would meet its own ids and refuse
        submits whose jobs stand, charged, to run at the next recovery. This write's rows are those with its
        id, account and timestamp; where the lookup fails too, none is found and the first failure stands."""
        try:
            jobs = [self.get(order.job_id) for order in orders]
        except Exception:
            return {}
        return {job.id: job for job, order in zip(jobs, orders, strict=True)
                if job is not None and job.account_id == order.account.id and job.created_at == now}

    def _one_alone(self, order: JobOrder) -> Job | Exception:
        try:
            return self.create_all([order])[0]
        except Exception as exc:
            return exc

    @staticmethod
    def _write(db, order: JobOrder, now: float) -> Job | InsufficientBalance:
        account = order.account
        params_text, inputs_text = json.dumps(order.params), json.dumps(order.inputs)
        charged = order.price if account.billed else 0.0
        if charged:
            balance = db.execute(
                "SELECT COALESCE((SELECT amount FROM balances WHERE account_id = ?), 0)", (account.id,)
            ).fetchone()[0]
            if balance + 1e-12 < charged:
                return InsufficientBalance()
            db.execute(
                "INSERT INTO ledger (account_id, job_id, amount, kind, created_at) VALUES (?,?,?,?,?)",
                (account.id, order.job_id, -charged, "charge", now),
            )
        db.execute(
            "INSERT INTO jobs (id, account_id, task, model, params, inputs, status, price, charged, webhook_url,"
            " return_inline, created_at, updated_at) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
            (order.job_id, account.id, order.task, order.model, params_text, inputs_text, "pending", order.price,
             charged, order.webhook_url, int(order.return_inline), now, now),
        )
        # The row as written, without reading it back (a submit's one query less); decoded from the stored
        # text, so it is the same job a later read returns.
        return Job(
            id=order.job_id, account_id=account.id, task=order.task, model=order.model, params=json.loads(params_text),
            inputs=json.loads(inputs_text), status="pending", progress=0.0, price=order.price, charged=charged,
            created_at=now, webhook_url=order.webhook_url, return_inline=bool(order.return_inline),
        )

    def get(self, job_id: str) -> Job | None:
        row = self.db.query_one("SELECT * FROM jobs WHERE id = ?", (job_id,))
        return _job(row) if row else None

    def pending(self) -> list[Job]:
        return [_job(r) for r in self.db.query("SELECT * FROM jobs WHERE status = 'pending' ORDER BY created_at")]

    def pending_ids(self, before: float) -> list[str]:
        """Pending jobs created before ``before``, oldest first: ids only, as a backlog may be long."""
        return [r["id"] for r in self.db.query("SELECT id FROM jobs WHERE status = 'pending' AND created_at < ? ORDER BY created_at", (before,))]

    def counts(self) -> dict[str, int]:
        return {r["status"]: r["n"] for r in self.db.query("SELECT status, COUNT(*) AS n FROM jobs GROUP BY status")}

    def recent(self, account_id: str, limit: int = 50) -> list[Job]:
        rows = self.db.query("SELECT * FROM jobs WHERE account_id = ? ORDER BY created_at DESC LIMIT ?", (account_id, limit))
        return [_job(r) for r in rows]

    def counts_by_task(self) -> dict[tuple[str, str], int]:
        rows = self.db.query("SELECT task, status, COUNT(*) AS n FROM jobs GROUP BY task, status")
        return {(r["task"], r["status"]): r["n"] for r in rows}

    def start(self, job_id: str) -> bool:
        now = time.time()
        return self._update(
            job_id,
            ("pending",),
            "status = 'processing', attempts = attempts + 1, started_at = ?, updated_at = ?",
            (now, now),
        )

    def start_all(self, job_ids: list[str]) -> list[Job]:
        """``start`` for each, in one transaction (a micro-batch's jobs start together: one commit, not one
        each): the jobs that were pending and now run, as they stand, in the order given."""
        if not job_ids:
            return []
        now = time.time()
        with self.db.transaction() as db:
            started = [
                job_id for job_id in job_ids
                if db.execute(
                    "UPDATE jobs SET status = 'processing', attempts = attempts + 1, started_at = ?, updated_at = ?"
                    " WHERE id = ? AND status = 'pending'", (now, now, job_id),
                ).rowcount == 1
            ]
            if not started:
                return []
            rows = db.execute(f"SELECT * FROM jobs WHERE id IN ({','.join('?' * len(started))})", tuple(started)).fetchall()
        by_id = {row["id"]: _job(row) for row in rows}
        return [by_id[job_id] for job_id in started]

    def resume(self, job_id: str) -> bool:
        """A job a preparation stage (a download) already started: it stays ``processing``."""
        return self._update(job_id, ("processing",), "updated_at = ?", (time.time(),))

    def set_inputs(self, job_id: str, inputs: dict[str, Any]) -> bool:
        return self._update(job_id, ACTIVE, "inputs = ?, updated_at = ?", (json.dumps(inputs), time.time()))

    def report_progress(self, job_id: str, progress: float, preview: str | None) -> bool:
        progress = max(0.0, min(99.99, float(progress)))
        if preview is None:
            return self._update(
                job_id, ACTIVE, "status = 'in_progress', progress = ?, updated_at = ?", (progress, time.time())
            )
        return self._update(
            job_id,
            ACTIVE,
            "status = 'in_progress', progress = ?, preview = ?, updated_at = ?",
            (progress, preview, time.time()),
        )

    def complete(
        self,
        job_id: str,
        *,
        result: str | None,
        result_file: str | None,
        result_alt: dict[str, str] | None = None,
        meta: dict[str, Any] | None = None,
        final_price: float | None = None,
    ) -> bool:
        """Mark the job done; with ``final_price``, settle its charge to it in the same transaction: the
        difference is refunded, or debited as far as the balance goes (settlement never takes a
        balance below zero; the quote was held up front)."""
        completion = Completion(job_id, result, result_file, result_alt, meta, final_price)
        return bool(self.complete_all([completion]))

    def complete_all(self, completions: list[Completion]) -> list[tuple[Job, str]]:
        """``complete`` for each, in one transaction (a micro-batch's jobs end together: one commit, not one
        each). The jobs that were active and are now done, as they now stand (read back in the transaction),
        each with the status it had, in the order given."""
        now = time.time()
        marks = ",".join("?" * len(ACTIVE))
        ended: dict[str, str] = {}
        with self.db.transaction() as db:
            for c in completions:
                row = db.execute(f"SELECT status FROM jobs WHERE id = ? AND status IN ({marks})", (c.job_id, *ACTIVE)).fetchone()
                if row is None:
                    continue
                db.execute(
                    "UPDATE jobs SET status = 'done', progress = 100, result = ?, result_file = ?, result_alt = ?,"
                    " meta = ?, finished_at = ?, updated_at = ? WHERE id = ?",
                    (c.result, c.result_file, json.dumps(c.result_alt or {}), json.dumps(c.meta or {}), now, now, c.job_id),
                )
                if c.final_price is not None:
                    self._settle(db, c.job_id, c.final_price, now)
                ended[c.job_id] = row["status"]
            if not ended:
                return []
            rows = db.execute(f"SELECT * FROM jobs WHERE id IN ({','.join('?' * len(ended))})", tuple(ended)).fetchall()
        by_id = {row["id"]: _job(row) for row in rows}
        return [(by_id[job_id], previous) for job_id, previous in ended.items()]

    @staticmethod
    def _settle(db, job_id: str, final_price: float, now: float) -> None:
        row = db.execute("SELECT account_id, charged FROM jobs WHERE id = ?", (job_id,)).fetchone()
        if not row["charged"]:  # the owner's jobs are not billed
            db.execute("UPDATE jobs SET price = ? WHERE id = ?", (final_price, job_id))
            return
        delta = round(final_price - row["charged"], 6)
        if delta > 0:
            balance = db.execute("SELECT COALESCE((SELECT amount FROM balances WHERE account_id = ?), 0)", (row["account_id"],)).fetchone()[0]
            delta = round(min(delta, max(0.0, balance)), 6)
        if delta:
            db.execute(
                "INSERT INTO ledger (account_id, job_id, amount, kind, created_at) VALUES (?,?,?,?,?)",
                (row["account_id"], job_id, -delta, "settle", now),
            )
        db.execute("UPDATE jobs SET price = ?, charged = ? WHERE id = ?", (final_price, round(row["charged"] + delta, 6), job_id))

    def fail(self, job_id: str, code: str, message: str) -> bool:
        """Mark the job failed and refund what it was charged, in one transaction."""
        message = redact_paths(message, self.home)
        now = time.time()
        with self.db.transaction() as db:
            row = db.execute("SELECT account_id, charged, status FROM jobs WHERE id = ?", (job_id,)).fetchone()
            if row is None or row["status"] in TERMINAL:
                return False
            db.execute(
                "UPDATE jobs SET status = 'error', error_code = ?, error_message = ?, finished_at = ?, updated_at = ?"
                " WHERE id = ?",
                (code, message, now, now, job_id),
            )
            if row["charged"]:
                db.execute(
                    "INSERT INTO ledger (account_id, job_id, amount, kind, created_at) VALUES (?,?,?,?,?)",
                    (row["account_id"], job_id, row["charged"], "refund", now),
                )
        return True

    def quarantine_running(self, code: str, message: str) -> list[str]:
        """Fail (and refund) every job left running: the process that ran them died of their doing,
        and running them again would kill it again."""
        running = [row["id"] for row in self.db.query("SELECT id FROM jobs WHERE status IN ('processing', 'in_progress')")]
        return [job_id for job_id in running if self.fail(job_id, code, message)]

    def recover(self, max_attempts: int) -> tuple[list[str], list[str]]:
        """After a crash: re-queue jobs left running, or fail those already tried ``max_attempts`` times.

        Returns (requeued ids, failed ids).
        """
        requeued, failed = [], []
        for row in self.db.query("SELECT id, attempts FROM jobs WHERE status IN ('processing', 'in_progress')"):
            if row["attempts"] >= max_attempts:
                failed.append(row["id"])
            else:
                requeued.append(row["id"])
        for job_id in requeued:
            self.requeue(job_id)
        for job_id in failed:
            self.fail(job_id, "WORKER_TIMEOUT", "The worker stopped while running this job, and it had been retried.")
        return requeued, failed

    def requeue(self, job_id: str) -> bool:
        """A running job back to ``pending`` (its attempt counted), to run again from the start."""
        return self._update(job_id, ACTIVE, "status = 'pending', progress = 0, preview = NULL, updated_at = ?", (time.time(),))

    def _update(self, job_id: str, from_states: tuple[str, ...], assignments: str, args: tuple) -> bool:
        marks = ",".join("?" * len(from_states))
        changed = self.db.execute(
            f"UPDATE jobs SET {assignments} WHERE id = ? AND status IN ({marks})", (*args, job_id, *from_states)
        )
        return changed == 1


def _job(row) -> Job:
    return Job(
        id=row["id"],
        account_id=row["account_id"],
        task=row["task"],
        model=row["model"],
        params=json.loads(row["params"]),
        inputs=json.loads(row["inputs"]),
        status=row["status"],
        progress=row["progress"],
        price=row["price"],
        charged=row["charged"],
        created_at=row["created_at"],
        webhook_url=row["webhook_url"],
        return_inline=bool(row["return_inline"]),
        attempts=row["attempts"],
        preview=row["preview"],
        result=row["result"],
        result_file=row["result_file"],
        result_alt=json.loads(row["result_alt"] or "{}"),
        meta=json.loads(row["meta"] or "{}"),
        error_code=row["error_code"],
        error_message=row["error_message"],
        started_at=row["started_at"],
        finished_at=row["finished_at"],
    )
