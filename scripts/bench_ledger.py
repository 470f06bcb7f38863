"""Submit latency of a billed account with a long ledger against an empty one (issue 18, goal 4).

Two ``drylocal serve`` processes, each on a data folder of its own with a billed (``basic``) key: one
account has no history, the other ``--rows`` ledger rows (a million by default, written straight into
the SQLite file before its server starts, through the same trigger that keeps the balance). One client
submits txt2embedding jobs to each in turn, ``--block`` at a time, so both see the same machine; each
submit is timed from the client. The goal: the long ledger's median within 10 % of the empty one's.

    .venv/bin/python scripts/bench_ledger.py [--rows 1000000] [--submits 2000] [--json out.json]

Rate limits are off in both (a basic key is limited to a few submits a minute); everything else is as
users run it. Exit 1 if a submit is refused or a balance came out negative.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from server.harness import ApiClient, ServerProcess  # noqa: E402

_CREDIT = 1_000_000.0


def write_history(home: Path, account_name: str, rows: int) -> float:
    """``rows`` ledger rows for the account (charges and credits that leave its balance as it was); seconds taken."""
    started = time.perf_counter()
    with contextlib.closing(sqlite3.connect(home / "drylocal.db")) as db:
        (account_id,) = db.execute("SELECT id FROM accounts WHERE name = ?", (account_name,)).fetchone()
        now = time.time()
        history = ((account_id, f"past-{i}", -0.001 if i % 2 else 0.001, "charge" if i % 2 else "credit", now) for i in range(rows))
        with db:
            db.executemany("INSERT INTO ledger (account_id, job_id, amount, kind, created_at) VALUES (?,?,?,?,?)", history)
    return time.perf_counter() - started


def timed_submits(client: ApiClient, count: int, label: str) -> list[float]:
    """Each submit's time; then the wait for the last job, so the next turn starts on a quiet machine
    instead of beside this server's backlog."""
    took, request_id = [], None
    for i in range(count):
        started = time.perf_counter()
        request_id = client.submit("txt2embedding", json={"input": f"{label} {i}", "model": "MiniLM_L6_v2"})
        took.append(1000 * (time.perf_counter() - started))
    if request_id is not None:
        client.wait(request_id)
    return took


def balance(client: ApiClient) -> float:
    return float(client.http.get("/api/v1/client/balance").json()["data"]["balance"])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--submits", type=int, default=2000, help="per server")
    parser.add_argument("--block", type=int, default=100, help="submits to one server before the other's turn")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    env = {"DRYLOCAL_RATE_LIMITS_ENABLED": "false"}
    with tempfile.TemporaryDirectory(prefix="bench-ledger-") as folder, contextlib.ExitStack() as stack:
        clients, filled = {}, {}
        for name in ("empty", "history"):
            home = Path(folder) / name
            server = ServerProcess(home)
            key = server.cli("keys", "create", "billed", "--tier", "basic", "--balance", str(_CREDIT)).strip()
            if name == "history":
                filled[name] = round(write_history(home, "billed", args.rows), 1)
            server.start(**env)
            stack.callback(server.close)
            clients[name] = stack.enter_context(contextlib.closing(ApiClient(server.url, key)))
            timed_submits(clients[name], 20, "warm-up")
        took: dict[str, list[float]] = {"empty": [], "history": []}
        ratios = []
        for block in range(max(1, args.submits // args.block)):
            medians = {}
            for name in took:
                sample = timed_submits(clients[name], args.block, f"block {block}")
                took[name] += sample
                medians[name] = statistics.median(sample)
            ratios.append(medians["history"] / medians["empty"])
        balances = {name: balance(client) for name, client in clients.items()}
    report = {
        "settings": {k: str(v) for k, v in vars(args).items()},
        "history_written_seconds": filled.get("history"),
        **{name: {"submits": len(t), "median_ms": round(statistics.median(t), 3),
                  "p90_ms": round(statistics.quantiles(t, n=10)[-1], 3)} for name, t in took.items()},
        "history_over_empty_median": round(statistics.median(ratios), 3),
        "balances": balances,
    }
    report["goal_met"] = report["history_over_empty_median"] <= 1.10
    text = json.dumps(report, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text)
    return 1 if any(b < 0 for b in balances.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
