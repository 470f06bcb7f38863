"""ResultStore.write_all: a pass's result files are made durable together, each under a temporary name until
then, and a failure fails the files it touched and no others."""

from __future__ import annotations

import errno
import os
import sys
from pathlib import Path

import pytest

from engine.results import ResultStore


class Flushes:
    """Stands in for the filesystem flush and for fsync: counts them, and what sat in the store meanwhile."""

    def __init__(self, store: ResultStore, monkeypatch, error: OSError | None = None) -> None:
        self.store, self.error = store, error
        self.filesystem: list[list[str]] = []
        self.files = 0
        monkeypatch.setattr(ResultStore, "_flush_filesystem", staticmethod(self.flush_filesystem))
        real_fsync = os.fsync

        def fsync(descriptor: int) -> None:
            self.files += 1
            real_fsync(descriptor)

        monkeypatch.setattr(os, "fsync", fsync)

    def flush_filesystem(self, folder: Path) -> None:
        assert folder == self.store.root
        self.filesystem.append(sorted(p.name for p in folder.rglob("*") if p.is_file()))
        if self.error:
            raise self.error


def present(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_a_pass_of_several_files_is_flushed_once_and_named_only_after(tmp_path, monkeypatch):
    store = ResultStore(tmp_path)
    flushes = Flushes(store, monkeypatch)
    outcomes = store.write_all([("a", "result.json", b"1"), ("b", "result.json", b"22"), ("b", "result.mp3", b"333")])
    assert outcomes == ["a/result.json", "b/result.json", "b/result.mp3"]
    assert present(tmp_path) == {"a/result.json": b"1", "b/result.json": b"22", "b/result.mp3": b"333"}
    assert flushes.files == 0
    assert flushes.filesystem == [["result.json.part", "result.json.part", "result.mp3.part"]]


def test_a_lone_file_is_fsynced_and_flushes_nothing_else(tmp_path, monkeypatch):
    store = ResultStore(tmp_path)
    flushes = Flushes(store, monkeypatch)
    assert store.write("a", "result.png", b"png") == "a/result.png"
    assert (flushes.files, flushes.filesystem) == (1, [])
    assert present(tmp_path) == {"a/result.png": b"png"}


def test_a_failed_flush_fails_every_file_it_covered_and_leaves_none(tmp_path, monkeypatch):
    store = ResultStore(tmp_path)
    Flushes(store, monkeypatch, OSError(errno.EIO, os.strerror(errno.EIO)))
    outcomes = store.write_all([("a", "result.json", b"1"), ("b", "result.json", b"2")])
    assert [o.errno for o in outcomes] == [errno.EIO, errno.EIO]  # type: ignore[union-attr]
    assert present(tmp_path) == {}


def test_a_file_that_cannot_be_written_fails_alone(tmp_path, monkeypatch):
    store = ResultStore(tmp_path)
    Flushes(store, monkeypatch)
    (tmp_path / "taken").write_bytes(b"a file where the job's folder would go")
    outcomes = store.write_all([("a", "result.json", b"1"), ("taken", "result.json", b"2"), ("c", "result.json", b"3")])
    assert outcomes[0] == "a/result.json" and outcomes[2] == "c/result.json"
    assert isinstance(outcomes[1], OSError)
    assert present(tmp_path)["c/result.json"] == b"3"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="syncfs is Linux's")
def test_the_real_filesystem_flush_answers(tmp_path):
    store = ResultStore(tmp_path)
    assert store._flush_filesystem is not None
    assert store.write_all([("a", "result.json", b"1"), ("b", "result.json", b"2")]) == ["a/result.json", "b/result.json"]
    assert present(tmp_path) == {"a/result.json": b"1", "b/result.json": b"2"}
