"""A request must not be able to kill the server, nor do it again at every restart.

A 9,500-character Piper text without sentence punctuation (within the documented limit) once grew the
process past 20 GB: VITS's attention is quadratic in its input and the text reached it as one piece.
"""

from __future__ import annotations

from model_registry.networks.piper import MAX_SENTENCE_PHONEMES, _bounded, phonemize


def test_unpunctuated_text_reaches_the_voice_in_bounded_pieces():
    text = "the quick brown fox jumps over a lazy dog " * 60  # 2,520 characters, no punctuation
    pieces = phonemize(text, "en-us")
    assert len(pieces) > 1 and max(len(p) for p in pieces) <= MAX_SENTENCE_PHONEMES
    # Cut between words: no word's phonemes are split over two pieces.
    assert all(not p.startswith(" ") and not p.endswith(" ") for p in pieces)


def test_a_word_longer_than_the_bound_is_cut_too():
    assert [len(p) for p in _bounded("a " + "x" * 900 + " b", 400)] == [1, 400, 400, 102]


def test_punctuated_sentences_are_left_as_they_were():
    pieces = phonemize("Hello there. How are you today?", "en-us")
    assert len(pieces) == 2 and pieces[0].endswith(".") and pieces[1].endswith("?")


# ---------------------------------------------------------------- the supervisor (real processes)
import signal  # noqa: E402
import sqlite3  # noqa: E402
import time  # noqa: E402

import httpx  # noqa: E402
import pytest  # noqa: E402

from tests.test_restart import Server  # noqa: E402


def _poll_through_restarts(server: Server, key: str, request_id: str, timeout: float = 180) -> dict:
    """Status polls that ride out the seconds in which the supervisor starts a new server."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            response = httpx.get(
                f"{server.url}/api/v1/client/request-status/{request_id}", headers={"Authorization": f"Bearer {key}"}
            )
            data = response.json()["data"]
            if data["status"] in ("done", "error"):
                return data
        except (httpx.HTTPError, ValueError, KeyError):
            pass
        time.sleep(0.2)
    raise AssertionError(f"{request_id} never finished")


def _submit(server: Server, key: str, text: str) -> str:
    response = httpx.post(
        f"{server.url}/api/v1/client/txt2embedding",
        json={"input": text, "model": "MiniLM_L6_v2"},
        headers={"Authorization": f"Bearer {key}"},
    )
    return response.json()["data"]["request_id"]


def _attempts(server: Server, request_id: str) -> int:
    with sqlite3.connect(server.home / "drylocal.db") as db:
        return db.execute("SELECT attempts FROM jobs WHERE id = ?", (request_id,)).fetchone()[0]


@pytest.fixture
def poisoned(tmp_path):
    server = Server(tmp_path / "home")
    server.env["DRYLOCAL_MEMORY_LIMIT_BYTES"] = str(2_500_000_000)
    payer = server.cli("keys", "create", "payer", "--tier", "premium", "--balance", "1").strip()
    server.start(runner="tests.fault_server", DRYLOCAL_FAULT="poison-text")
    yield server, payer
    if server.proc and server.proc.poll() is None:
        server.kill()


def _balance(server: Server, key: str) -> float:
    return httpx.get(f"{server.url}/api/v1/client/balance", headers={"Authorization": f"Bearer {key}"}).json()["data"]["balance"]


@pytest.mark.slow
def test_a_job_past_the_memory_limit_is_killed_failed_once_and_the_server_comes_back(poisoned):
    server, payer = poisoned
    hog = _submit(server, payer, "HOG")
    failed = _poll_through_restarts(server, payer, hog)
    assert failed["status"] == "error" and failed["error_code"] == "OUT_OF_MEMORY"
    assert "memory limit" in failed["error_message"] and "not retried" in failed["error_message"]
    assert _attempts(server, hog) == 1  # never run into the same death again
    assert _balance(server, payer) == 1.0  # refunded
    assert server.proc.poll() is None  # the supervisor lived on and started a new server
    assert _poll_through_restarts(server, payer, _submit(server, payer, "a normal text"))["status"] == "done"


@pytest.mark.slow
def test_a_native_crash_fails_its_job_once_and_the_server_comes_back(poisoned):
    server, payer = poisoned
    crash = _submit(server, payer, "SEGV")
    failed = _poll_through_restarts(server, payer, crash)
    assert failed["status"] == "error" and "SIGSEGV" in failed["error_message"]
    assert _attempts(server, crash) == 1
    assert _poll_through_restarts(server, payer, _submit(server, payer, "a normal text"))["status"] == "done"


@pytest.mark.slow
def test_stopping_the_supervisor_stops_the_server_cleanly(poisoned):
    server, _ = poisoned
    server.proc.send_signal(signal.SIGTERM)
    assert server.proc.wait(30) == 0
    with pytest.raises(httpx.HTTPError):
        httpx.get(f"{server.url}/health", timeout=2)
    assert not (server.home / "last-crash.json").exists()
