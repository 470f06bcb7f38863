"""Schemathesis against drylocal's own OpenAPI document, every operation: generated inputs, valid and
not, never get a 5xx, and every refusal is the dryAPI error envelope (tests/schemathesis_hooks.py)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from engine import Settings
from tests.conftest import live_server

SCHEMATHESIS = Path(sys.executable).parent / "schemathesis"


def test_no_server_errors_and_every_refusal_in_the_envelope(tmp_path):
    settings = Settings.load(home=tmp_path / "home", rate_limits_enabled=False)
    with live_server(settings) as server:
        key, _ = server.new_key("fuzz", tier="premium", balance=1000.0)
        report = tmp_path / "report.json"
        run = subprocess.run(
            [
                str(SCHEMATHESIS), "run", f"{server.url}/schema/openapi.json",
                "--header", f"Authorization: Bearer {key}",
                "--checks", "not_a_server_error,dryapi_error_envelope",
                "--max-examples", "15", "--workers", "2", "--generation-deterministic",
                "--phases", "examples,fuzzing", "--request-timeout", "60",
                "--report", "ndjson", "--report-ndjson-path", str(report),
            ],
            env={**os.environ, "SCHEMATHESIS_HOOKS": "tests.schemathesis_hooks", "PYTHONPATH": str(Path(__file__).parent.parent)},
            capture_output=True, text=True, timeout=900,
        )
    assert run.returncode == 0, run.stdout[-6000:] + run.stderr[-2000:]
    assert "operations" in run.stdout.lower() or report.exists()
