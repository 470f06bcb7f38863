"""Submits that wait on the loop together are written in one transaction (engine/job_intake.py), each with
its own outcome: a short balance or a bad row refuses that order alone."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import uuid

import pytest

from engine.accounts import AccountStore
from engine.database import Database
from engine.errors import InsufficientBalance
from engine.job_intake import JobIntake
from engine.jobs import JobOrder, JobStore


class CountedTransactions(Database):
    """Counts commits; for the next ``lose`` transactions, commits and then fails as a connection dropped
    after COMMIT does."""

    commits = 0
    lose = 0

    @contextlib.contextmanager
    def transaction(self):
        with super().transaction() as db:
            yield db
        self.commits += 1
        if self.lose:
            self.lose -= 1
            raise sqlite3.OperationalError("server closed the connection unexpectedly")


@pytest.fixture
def store(tmp_path):
    db = CountedTransactions(tmp_path / "d.db")
    return db, AccountStore(db), JobStore(db)


def order(account, price: float = 0.0, job_id: str | None = None) -> JobOrder:
    return JobOrder(account, task="txt2embedding", model="m", params={"input": "x"}, inputs={}, price=price,
                    job_id=job_id or str(uuid.uuid4()))


def test_a_group_debits_in_turn_and_refuses_only_the_order_the_balance_cannot_cover(store):
    db, accounts, jobs = store
    payer = accounts.create_account("payer", tier="premium", balance=0.25)
    free = accounts.create_account("free", tier="unlimited")
    orders = [order(payer, 0.1), order(free), order(payer, 0.1), order(payer, 0.1), order(payer, 0.05)]
    before = db.commits
    outcomes = jobs.create_all(orders)
    assert db.commits == before + 1
    assert [type(o).__name__ for o in outcomes] == ["Job", "Job", "Job", "InsufficientBalance", "Job"]
    assert jobs.get(orders[3].job_id) is None
    assert all(jobs.get(o.job_id) == outcome for o, outcome in zip(orders, outcomes, strict=True) if o is not orders[3])
    assert accounts.balance(payer.id) == pytest.approx(0.0, abs=1e-12)


def test_a_row_the_database_refuses_fails_alone_and_the_rest_are_written(store):
    _, accounts, jobs = store
    account = accounts.create_account("a", tier="premium", balance=1.0)
    taken = jobs.create(account, task="txt2embedding", model="m", params={}, inputs={}, price=0.1)
    orders = [order(account, 0.1), order(account, 0.1, job_id=taken.id), order(account, 0.1)]
    outcomes = jobs.create_all(orders)
    assert isinstance(outcomes[1], sqlite3.IntegrityError)
    assert jobs.get(orders[0].job_id) == outcomes[0] and jobs.get(orders[2].job_id) == outcomes[2]
    assert accounts.balance(account.id) == pytest.approx(0.7)  # three charges, not four


def test_submits_waiting_together_share_one_commit_and_each_gets_its_own_answer(store):
    db, accounts, jobs = store
    payer = accounts.create_account("payer", tier="premium", balance=0.3)
    accepted = []
    intake = JobIntake(jobs, accepted.append)

    async def scenario():
        return await asyncio.gather(*(intake.create(order(payer, 0.1)) for _ in range(4)), return_exceptions=True)

    before = db.commits
    outcomes = asyncio.run(scenario())
    assert db.commits == before + 1
    assert [type(o).__name__ for o in outcomes] == ["Job", "Job", "Job", "InsufficientBalance"]
    assert accepted == outcomes[:3]


def test_a_lone_submit_is_written_at_once(store):
    db, accounts, jobs = store
    account = accounts.create_account("a")
    intake = JobIntake(jobs, lambda job: None)

    async def scenario():
        first = await intake.create(order(account))
        second = await intake.create(order(account))
        return first, second

    before = db.commits
    first, second = asyncio.run(scenario())
    assert db.commits == before + 2 and jobs.get(first.id) == first and jobs.get(second.id) == second


def test_a_submit_cancelled_while_it_waits_still_leaves_a_job_that_is_queued(store):
    _, accounts, jobs = store
    account = accounts.create_account("a")
    accepted = []
    intake = JobIntake(jobs, accepted.append)
    mine = order(account)

    async def scenario():
        waiting = asyncio.ensure_future(intake.create(mine))
        await asyncio.sleep(0)  # the submit is waiting on the flush
        waiting.cancel()
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        return waiting

    waiting = asyncio.run(scenario())
    assert waiting.cancelled()
    assert [job.id for job in accepted] == [mine.job_id] and jobs.get(mine.job_id).status == "pending"


def test_when_the_store_fails_every_waiting_submit_hears_it(store):
    _, accounts, jobs = store
    account = accounts.create_account("a")

    def broken(orders):
        raise sqlite3.OperationalError("disk I/O error")

    jobs.create_all = broken
    intake = JobIntake(jobs, lambda job: None)

    async def scenario():
        return await asyncio.gather(*(intake.create(order(account)) for _ in range(3)), return_exceptions=True)

    assert all(isinstance(o, sqlite3.OperationalError) for o in asyncio.run(scenario()))


def test_insufficient_balance_is_what_a_short_submit_raises(store):
    _, accounts, jobs = store
    poor = accounts.create_account("poor", tier="premium", balance=0.0)
    intake = JobIntake(jobs, lambda job: None)
    with pytest.raises(InsufficientBalance):
        asyncio.run(intake.create(order(poor, 0.1)))


def test_an_order_that_cannot_be_stored_fails_alone(store):
    _, accounts, jobs = store
    account = accounts.create_account("a")
    odd = JobOrder(account, task="txt2embedding", model="m", params={"input": object()}, inputs={}, price=0.0,
                   job_id=str(uuid.uuid4()))
    outcomes = jobs.create_all([order(account), odd, order(account)])
    assert isinstance(outcomes[1], TypeError) and jobs.get(odd.job_id) is None
    assert [type(outcomes[0]).__name__, type(outcomes[2]).__name__] == ["Job", "Job"]


def test_a_refused_order_is_handed_back_even_when_its_submit_was_cancelled(store):
    _, accounts, jobs = store
    poor = accounts.create_account("poor", tier="premium", balance=0.0)
    refused = []
    intake = JobIntake(jobs, lambda job: None, refused.append)
    mine = order(poor, 0.1)

    async def scenario():
        waiting = asyncio.ensure_future(intake.create(mine))
        await asyncio.sleep(0)
        waiting.cancel()
        for _ in range(3):
            await asyncio.sleep(0)

    asyncio.run(scenario())
    assert refused == [mine]


@pytest.mark.parametrize("group", [1, 4])
def test_a_commit_whose_answer_is_lost_answers_the_jobs_it_wrote_and_charges_each_once(tmp_path, group):
    db = CountedTransactions(tmp_path / "d.db")
    accounts, jobs = AccountStore(db), JobStore(db)
    payer = accounts.create_account("payer", tier="premium", balance=0.35)
    orders = [order(payer, 0.1) for _ in range(group)]
    db.lose = 1
    outcomes = jobs.create_all(orders)
    expected = ["Job"] * min(group, 3) + ["InsufficientBalance"] * (group - 3)
    assert [type(o).__name__ for o in outcomes] == expected
    assert all(jobs.get(o.job_id) == outcome for o, outcome in zip(orders, outcomes) if not isinstance(outcome, Exception))
    assert accounts.balance(payer.id) == pytest.approx(0.35 - 0.1 * min(group, 3))


def test_a_failed_commit_that_wrote_nothing_still_fails(tmp_path):
    db = CountedTransactions(tmp_path / "d.db")
    accounts, jobs = AccountStore(db), JobStore(db)
    account = accounts.create_account("a", tier="premium", balance=1.0)
    taken = jobs.create(account, task="txt2embedding", model="m", params={}, inputs={}, price=0.1)
    with pytest.raises(sqlite3.IntegrityError):  # its id is another job's: that job is not taken for its own
        jobs.create_all([order(account, 0.1, job_id=taken.id)])
