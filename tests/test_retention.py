"""Nothing grows forever: results, leftover inputs, finished rows and delivered webhooks expire.

Once, results, inputs, job rows and the webhook outbox were never deleted.
"""

from __future__ import annotations

import subprocess
import sys
import time

from engine.retention import collect


def _finished_job(api, text: str = "hello") -> str:
    request_id = api.post("txt2embedding", json={"input": text, "model": "MiniLM_L6_v2"}).json()["data"]["request_id"]
    assert api.wait(request_id)["status"] == "done"
    return request_id


def _age(api, request_id: str, seconds: float) -> None:
    api.engine.db.execute("UPDATE jobs SET finished_at = finished_at - ? WHERE id = ?", (seconds, request_id))


def test_results_expire_after_the_retention_and_the_status_says_so(api):
    settings = api.engine.settings
    old, fresh = _finished_job(api, "old"), _finished_job(api, "fresh")
    _age(api, old, settings.result_retention_seconds + 60)
    report = collect(api.engine.db, settings)
    assert report.results == 1 and report.bytes_freed > 0
    assert not (settings.results_dir / old).exists() and (settings.results_dir / fresh).exists()
    assert api.get(f"request-status/{old}").json()["data"]["result_url"] is None
    assert api.get(f"request-status/{fresh}").json()["data"]["result_url"]


def test_finished_rows_expire_but_the_ledger_keeps_the_money(settings):
    from tests.conftest import running_api

    with running_api(settings, tier="premium", balance=1.0) as api:
        request_id = _finished_job(api)
        balance = api.get("balance").json()["data"]["balance"]
        _age(api, request_id, api.engine.settings.job_retention_seconds + 60)
        assert collect(api.engine.db, api.engine.settings).job_rows == 1
        assert api.get(f"request-status/{request_id}").status_code == 404
        assert api.get("balance").json()["data"]["balance"] == balance < 1.0


def test_leftover_inputs_and_delivered_webhooks_are_collected(api):
    settings = api.engine.settings
    orphan = settings.inputs_dir / "gone-job"
    orphan.mkdir(parents=True)
    (orphan / "audio.wav").write_bytes(b"x" * 1000)
    now = time.time()
    api.engine.db.execute(
        "INSERT INTO webhook_outbox (delivery_id, account_id, job_id, event, url, body, state, attempts, next_attempt_at,"
        " created_at) VALUES ('d1', 'a', 'j', 'job.completed', 'https://x', '{}', 'delivered', 1, ?, ?)",
        (now, now - 3 * 86400),
    )
    api.engine.db.execute(
        "INSERT INTO webhook_outbox (delivery_id, account_id, job_id, event, url, body, state, attempts, next_attempt_at,"
        " created_at) VALUES ('d2', 'a', 'j2', 'job.completed', 'https://x', '{}', 'pending', 1, ?, ?)",
        (now, now - 3 * 86400),
    )
    report = collect(api.engine.db, settings)
    assert report.inputs == 1 and not orphan.exists() and report.webhook_rows == 1
    assert [r["delivery_id"] for r in api.engine.db.query("SELECT delivery_id FROM webhook_outbox")] == ["d2"]  # pending stays


def test_drylocal_gc_says_what_it_freed(tmp_path):
    env = {"DRYLOCAL_HOME": str(tmp_path / "home"), "PATH": "/usr/bin:/bin"}
    out = subprocess.run([sys.executable, "-m", "server.cli", "gc"], env=env, capture_output=True, text=True, check=True).stdout
    assert out.startswith("drylocal gc: freed 0.0 MB: 0 results, 0 input folders; deleted 0 finished jobs")
