"""One account's flood or one endless job must not hold the executor for everyone.

Once, a cheap job could hold the executor for minutes while thousands of others waited (no per-job
time limit, no fairness between accounts).
"""

from __future__ import annotations

import pytest

from engine.scheduler import QueuedJob, fair_order, plan
from tests.conftest import running_api

GB = 1_000_000_000


def _job(job_id: str, account: str, at: float, model: str = "m") -> QueuedJob:
    return QueuedJob(job_id, model, "txt2img", GB, at, account=account)


def test_a_flood_from_one_account_does_not_queue_ahead_of_another_accounts_job():
    flood = [_job(f"a{i}", "A", float(i)) for i in range(1000)]
    late = _job("b0", "B", 1000.5)
    order = [job.job_id for job in fair_order([*flood, late])]
    assert order[:3] == ["a0", "b0", "a1"]
    # Through plan(): with A's first job run, B's goes next, not after 999 more of A's.
    decision = plan([*flood[1:], late], [], 10 * GB, now=1001.0, max_wait=30.0, served={"A": 1000.9})
    assert decision.run == ("b0",)
    # Then A's turn again, then B's next job: alternation, whatever the flood's size.
    after = plan([*flood[1:], _job("b1", "B", 1001.5)], [], 10 * GB, now=1002.0, max_wait=30.0, served={"A": 1000.9, "B": 1001.2})
    assert after.run == ("a1",)


def test_turns_keep_age_order_within_an_account_and_between_equal_ranks():
    jobs = [_job("a0", "A", 0), _job("a1", "A", 1), _job("b0", "B", 2), _job("c0", "C", 3), _job("b1", "B", 4)]
    assert [j.job_id for j in fair_order(jobs)] == ["a0", "b0", "c0", "a1", "b1"]


def test_a_job_past_its_time_limit_is_stopped_at_its_next_step_and_refunded(settings):
    with running_api(settings.model_copy(update={"job_time_limit_seconds": 0.001}), tier="premium", balance=1.0) as api:
        texts = [f"text number {i}" for i in range(300)]
        request_id = api.post("txt2embedding", json={"input": texts, "model": "MiniLM_L6_v2"}).json()["data"]["request_id"]
        status = api.wait(request_id)
        assert status["status"] == "error" and status["error_code"] == "WORKER_TIMEOUT"
        assert "time limit" in status["error_message"]
        assert api.get("balance").json()["data"]["balance"] == 1.0


@pytest.mark.parametrize(
    ("task", "params", "expected"),
    [("txt2img", {}, 1800), ("txt2video", {}, 3600), ("audiofile2txt", {"duration_seconds": 3600}, 9000), ("txt2img", {}, 0)],
)
def test_time_limits_follow_the_task_and_size(task, params, expected):
    from engine.tasks import TASKS

    assert TASKS[task].time_limit(params, 0 if expected == 0 else 1800) == expected
