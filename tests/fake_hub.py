"""A Hugging Face hub stand-in on 127.0.0.1 serving local folders as repos, for testing downloads offline.

It answers the calls huggingface_hub makes: repo info (the commit; with ``?blobs=true`` each file's size,
git blob id and, for LFS files, sha256), the file tree, and resolve (each file, with the headers that
identify its version, honouring Range requests). Faults a real network or mirror can show are opt-in:
``cut_first`` closes the first response of a file after some bytes, ``corrupt`` serves a file's bytes
altered while the metadata still advertises the true checksum.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Callable, Iterator
from urllib.parse import parse_qs, unquote

__all__ = ("COMMIT", "LFS_SUFFIXES", "fake_hub", "git_blob_sha1")

COMMIT = "c0ffee" + "0" * 34

LFS_SUFFIXES = frozenset({".safetensors", ".bin", ".pt", ".pth", ".onnx", ".ckpt", ".gguf", ".msgpack", ".h5"})
"""What the hub's default .gitattributes stores with Git LFS: weights and other large binaries."""


def git_blob_sha1(data: bytes) -> str:
    """The id git gives a file's content, which the hub reports as ``blobId``/``oid`` for non-LFS files."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def _file_entry(name: str, file: Path) -> dict:
    data = file.read_bytes()
    entry = {"size": len(data), "blobId": git_blob_sha1(data)}
    if file.suffix in LFS_SUFFIXES:
        entry["lfs"] = {"sha256": hashlib.sha256(data).hexdigest(), "size": len(data), "pointerSize": 134}
    return entry


def _byte_range(header: str | None, size: int) -> tuple[int, int] | None:
    """``bytes=START-`` or ``bytes=START-END`` as a half-open (start, stop) slice."""
    match = re.fullmatch(r"bytes=(\d+)-(\d*)", header or "")
    if not match:
        return None
    start = int(match[1])
    stop = int(match[2]) + 1 if match[2] else size
    return start, min(stop, size)


def _handler(
    repos: dict[str, Path],
    requests: list[str],
    cut_first: dict[str, int],
    while_cut: Callable[[], None] | None,
    corrupt: set[str],
):
    cuts_left = dict(cut_first)
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args) -> None:
            pass

        def _repo_and_rest(self, path: str, marker: str) -> tuple[str, str] | None:
            for repo_id in repos:
                prefix = f"{marker}{repo_id}/"
                if path.startswith(prefix) or path == prefix[:-1]:
                    return repo_id, path[len(prefix) :]
            return None

        def _send(self, status: int, body: bytes, headers: dict[str, str], head: bool, cut_at: int | None = None) -> None:
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if head:
                return
            if cut_at is None:
                self.wfile.write(body)
                return
            # A dropped connection: the promised length never arrives.
            self.wfile.write(body[:cut_at])
            self.wfile.flush()
            if while_cut is not None:
                while_cut()

        def _api(self, repo_id: str, rest: str, query: dict) -> object | None:
            files = sorted(p for p in repos[repo_id].rglob("*") if p.is_file())
            names = [p.relative_to(repos[repo_id]).as_posix() for p in files]
            if rest == "" or rest.startswith("revision/"):
                with_blobs = query.get("blobs", ["false"])[0].lower() == "true"
                siblings = [
                    {"rfilename": n, **(_file_entry(n, p) if with_blobs else {})} for n, p in zip(names, files)
                ]
                return {"id": repo_id, "sha": COMMIT, "siblings": siblings}
            if rest.startswith("tree/"):
                entries = []
                for n, p in zip(names, files):
                    entry = _file_entry(n, p)
                    tree_entry = {"type": "file", "path": n, "size": entry["size"], "oid": entry["blobId"]}
                    if "lfs" in entry:
                        tree_entry["lfs"] = {"oid": entry["lfs"]["sha256"], "size": entry["size"], "pointerSize": 134}
                    entries.append(tree_entry)
                return entries
            return None

        def _resolve(self, repo_id: str, filename: str, head: bool) -> bool:
            file = repos[repo_id] / filename
            if not file.is_file():
                return False
            data = file.read_bytes()
            entry = _file_entry(filename, file)
            etag = entry["lfs"]["sha256"] if "lfs" in entry else entry["blobId"]
            if filename in corrupt:
                data = bytes(b ^ 0xFF for b in data[:64]) + data[64:]
            headers = {
                "X-Repo-Commit": COMMIT,
                "ETag": f'"{etag}"',
                "Content-Type": "application/octet-stream",
                "Accept-Ranges": "bytes",
            }
            cut_at = None
            if not head:
                with lock:
                    cut_at = cuts_left.pop(filename, None)
            wanted = _byte_range(self.headers.get("Range"), len(data))
            if wanted is not None and not head:
                start, stop = wanted
                headers["Content-Range"] = f"bytes {start}-{stop - 1}/{len(data)}"
                self._send(206, data[start:stop], headers, head, cut_at)
            else:
                self._send(200, data, headers, head, cut_at)
            return True

        def _serve(self, head: bool) -> None:
            path, _, query = self.path.partition("?")
            path = unquote(path)
            ranged = self.headers.get("Range")
            requests.append(f"{self.command} {path}" + (f" Range: {ranged}" if ranged else ""))
            found = self._repo_and_rest(path, "/api/models/")
            if found:
                info = self._api(*found, parse_qs(query))
                if info is not None:
                    return self._send(200, json.dumps(info).encode(), {"Content-Type": "application/json"}, head)
            found = self._repo_and_rest(path, "/")
            if found and found[1].startswith("resolve/"):
                repo_id, rest = found
                if self._resolve(repo_id, rest.split("/", 2)[2], head):
                    return
            self._send(404, b'{"error": "not found"}', {"X-Error-Code": "EntryNotFound"}, head)

        def do_GET(self) -> None:
            self._serve(head=False)

        def do_HEAD(self) -> None:
            self._serve(head=True)

    return Handler


@contextlib.contextmanager
def fake_hub(
    repos: dict[str, Path],
    *,
    cut_first: dict[str, int] | None = None,
    while_cut: Callable[[], None] | None = None,
    corrupt: set[str] | frozenset[str] = frozenset(),
) -> Iterator[tuple[str, list[str]]]:
    """Serve ``repos`` (repo id -> folder); yields the endpoint URL and the log of requests.

    ``cut_first`` maps a file's repo path to how many bytes its first download gets before the
    connection closes; ``while_cut`` runs at that moment (a test presses Ctrl-C there). Files named in
    ``corrupt`` are served with altered bytes under their true checksum.
    """
    requests: list[str] = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(repos, requests, cut_first or {}, while_cut, set(corrupt)))
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", requests
    finally:
        server.shutdown()
        server.server_close()
