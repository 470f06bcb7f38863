"""``drylocal pull``: checksums verified before first use, resumed downloads, damaged files refused."""

from __future__ import annotations

import hashlib
import json
import os
import re
import signal
import threading
import time
from pathlib import Path

import pytest

from server.cli import main
from tests.fake_hub import COMMIT, fake_hub, git_blob_sha1

WEIGHTS_BYTES = 12 << 20
"""Over huggingface_hub's 10 MB download chunk: a partial file only ever keeps whole chunks."""
CUT_AT = 11 << 20


@pytest.fixture
def home(tmp_path, monkeypatch):
    import huggingface_hub.constants

    monkeypatch.setenv("DRYLOCAL_HOME", str(tmp_path / "home"))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)  # the suite runs offline
    return tmp_path / "home"


@pytest.fixture(scope="module")
def repo(tmp_path_factory) -> Path:
    """Stands in for BAAI/bge-m3: a small git file and an LFS weights file; pull never reads their content."""
    folder = tmp_path_factory.mktemp("bge-m3")
    (folder / "modules.json").write_text('[{"idx": 0, "name": "0", "path": "", "type": "Transformer"}]')
    (folder / "model.safetensors").write_bytes(os.urandom(WEIGHTS_BYTES))
    return folder


def pulled_dir(home: Path) -> Path:
    return home / "models" / "BAAI--bge-m3"


def downloads(requests: list[str], filename: str) -> list[str]:
    return [r for r in requests if r.startswith("GET ") and r.split()[1].endswith(f"/resolve/{COMMIT}/{filename}")]


def test_pull_verifies_every_file_and_writes_a_manifest(home, repo, capsys):
    with fake_hub({"BAAI/bge-m3": repo}) as (endpoint, _):
        assert main(["pull", "Bge_M3_INT8", "--endpoint", endpoint]) == 0
    out = capsys.readouterr().out
    assert re.fullmatch(rf"Bge_M3_INT8: {re.escape(str(pulled_dir(home)))} \(2 files, 12.6 MB, verified at commit c0ffee0\)\n", out)
    manifest = json.loads((pulled_dir(home) / ".drylocal-verified.json").read_text())
    weights = (repo / "model.safetensors").read_bytes()
    assert manifest["commit"] == COMMIT
    assert manifest["files"]["model.safetensors"] == {"size": WEIGHTS_BYTES, "sha256": hashlib.sha256(weights).hexdigest()}
    modules = (repo / "modules.json").read_bytes()
    assert manifest["files"]["modules.json"] == {"size": len(modules), "git_sha1": git_blob_sha1(modules)}
    assert (pulled_dir(home) / "model.safetensors").read_bytes() == weights
    assert not (home / "models" / ".partial").exists()


def test_a_second_pull_downloads_nothing_already_verified(home, repo, capsys):
    with fake_hub({"BAAI/bge-m3": repo}) as (endpoint, requests):
        main(["pull", "Bge_M3_INT8", "--endpoint", endpoint])
        requests.clear()
        assert main(["pull", "Bge_M3_INT8", "--endpoint", endpoint]) == 0
    assert downloads(requests, "model.safetensors") == [] and downloads(requests, "modules.json") == []
    assert "already there, verified" in capsys.readouterr().out.splitlines()[-1]


def test_a_connection_cut_part_way_resumes_from_where_it_stopped(home, repo, capsys):
    with fake_hub({"BAAI/bge-m3": repo}, cut_first={"model.safetensors": CUT_AT}) as (endpoint, requests):
        assert main(["pull", "Bge_M3_INT8", "--endpoint", endpoint]) == 0
    first, resumed = downloads(requests, "model.safetensors")
    assert "Range" not in first and resumed.endswith(f"Range: bytes={10 << 20}-")
    assert (pulled_dir(home) / "model.safetensors").read_bytes() == (repo / "model.safetensors").read_bytes()


def test_an_interrupted_pull_looks_uninstalled_and_the_next_pull_resumes_it(home, repo, capsys, monkeypatch):
    import huggingface_hub.constants

    partials = home / "models" / ".partial" / "BAAI--bge-m3"
    # The hub client gives up on a silent connection after 10 s and reconnects by itself; on a loaded
    # machine that raced the Ctrl-C below. The interruption is what this test is about.
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_DOWNLOAD_TIMEOUT", 120)

    def press_ctrl_c() -> None:
        # Once the client has saved what it got, interrupt it as a user would.
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and sum(p.stat().st_size for p in partials.glob("*.incomplete")) < 10 << 20:
            time.sleep(0.01)
        signal.pthread_kill(threading.main_thread().ident, signal.SIGINT)

    # Ctrl-C must reach this process as Python's KeyboardInterrupt, whatever handler an earlier test's
    # event loop left installed.
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        with fake_hub({"BAAI/bge-m3": repo}, cut_first={"model.safetensors": CUT_AT}, while_cut=press_ctrl_c) as (endpoint, requests):
            assert main(["pull", "Bge_M3_INT8", "--endpoint", endpoint]) == 130
            assert "`drylocal pull Bge_M3_INT8` resumes" in capsys.readouterr().err
            main(["models"])
            assert re.search(r"Bge_M3_INT8 .* not installed", capsys.readouterr().out)
            requests.clear()
            assert main(["pull", "Bge_M3_INT8", "--endpoint", endpoint]) == 0
    finally:
        signal.signal(signal.SIGINT, previous)
    assert downloads(requests, "model.safetensors") == [
        f"GET /BAAI/bge-m3/resolve/{COMMIT}/model.safetensors Range: bytes={10 << 20}-"
    ]
    assert "resuming model.safetensors at 10485760 of 12582912 bytes" in capsys.readouterr().err
    manifest = json.loads((pulled_dir(home) / ".drylocal-verified.json").read_text())
    assert set(manifest["files"]) == {"modules.json", "model.safetensors"}
    assert (pulled_dir(home) / "model.safetensors").read_bytes() == (repo / "model.safetensors").read_bytes()


@pytest.mark.parametrize("damaged", ["model.safetensors", "modules.json"])
def test_a_file_that_does_not_match_its_checksum_is_refused_and_deleted(home, repo, capsys, damaged):
    with fake_hub({"BAAI/bge-m3": repo}, corrupt={damaged}) as (endpoint, _):
        assert main(["pull", "Bge_M3_INT8", "--endpoint", endpoint]) == 1
    err = capsys.readouterr().err
    assert f"{damaged} failed verification" in err
    assert not pulled_dir(home).exists()
    served = (repo / damaged).read_bytes()
    bad = bytes(b ^ 0xFF for b in served[:64]) + served[64:]
    left = [p for p in (home / "models").rglob("*") if p.is_file() and p.stat().st_size == len(bad)]
    assert all(p.read_bytes() != bad for p in left)
    main(["models"])
    assert re.search(r"Bge_M3_INT8 .* not installed", capsys.readouterr().out)


def test_a_refused_file_is_fetched_again_and_the_verified_ones_are_kept(home, repo, capsys):
    with fake_hub({"BAAI/bge-m3": repo}, corrupt={"modules.json"}) as (endpoint, _):
        main(["pull", "Bge_M3_INT8", "--endpoint", endpoint])
    with fake_hub({"BAAI/bge-m3": repo}) as (endpoint, requests):
        assert main(["pull", "Bge_M3_INT8", "--endpoint", endpoint]) == 0
    # The weights, listed first, were verified before the damaged file was met and waited in the staging folder.
    assert downloads(requests, "model.safetensors") == [] and len(downloads(requests, "modules.json")) == 1
    assert (pulled_dir(home) / "modules.json").read_bytes() == (repo / "modules.json").read_bytes()


def test_files_placed_by_hand_are_verified_in_place_not_downloaded(home, repo, capsys):
    pulled_dir(home).mkdir(parents=True)
    (pulled_dir(home) / "model.safetensors").write_bytes((repo / "model.safetensors").read_bytes())
    with fake_hub({"BAAI/bge-m3": repo}) as (endpoint, requests):
        assert main(["pull", "Bge_M3_INT8", "--endpoint", endpoint]) == 0
    assert downloads(requests, "model.safetensors") == [] and len(downloads(requests, "modules.json")) == 1
    assert "model.safetensors" in json.loads((pulled_dir(home) / ".drylocal-verified.json").read_text())["files"]
