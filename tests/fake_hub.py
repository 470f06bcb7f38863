"""A Hugging Face hub stand-in on 127.0.0.1 serving local folders as repos, for testing downloads offline.

It answers the calls huggingface_hub's snapshot_download makes: repo info (the commit), the file tree,
and resolve (each file, with the headers that identify its version).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Iterator

COMMIT = "c0ffee" + "0" * 34


def _handler(repos: dict[str, Path], requests: list[str]):
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args) -> None:
            pass

        def _repo_and_rest(self, path: str, marker: str) -> tuple[str, str] | None:
            for repo_id in repos:
                prefix = f"{marker}{repo_id}/"
                if path.startswith(prefix):
                    return repo_id, path[len(prefix) :]
            return None

        def _send(self, status: int, body: bytes, headers: dict[str, str], head: bool) -> None:
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if not head:
                self.wfile.write(body)

        def _serve(self, head: bool) -> None:
            path = self.path.split("?", 1)[0]
            requests.append(f"{self.command} {path}")
            found = self._repo_and_rest(path, "/api/models/")
            if found:
                repo_id, rest = found
                files = sorted(p for p in repos[repo_id].rglob("*") if p.is_file())
                names = [str(p.relative_to(repos[repo_id])) for p in files]
                if rest.startswith("revision/"):
                    info = {"id": repo_id, "sha": COMMIT, "siblings": [{"rfilename": n} for n in names]}
                elif rest.startswith("tree/"):
                    info = [
                        {"type": "file", "path": n, "size": p.stat().st_size, "oid": hashlib.sha1(p.read_bytes()).hexdigest()}
                        for n, p in zip(names, files)
                    ]
                else:
                    info = None
                if info is not None:
                    return self._send(200, json.dumps(info).encode(), {"Content-Type": "application/json"}, head)
            found = self._repo_and_rest(path, "/")
            if found and found[1].startswith("resolve/"):
                repo_id, rest = found
                filename = rest.split("/", 2)[2]
                file = repos[repo_id] / filename
                if file.is_file():
                    data = file.read_bytes()
                    etag = hashlib.sha256(data).hexdigest()
                    headers = {"X-Repo-Commit": COMMIT, "ETag": f'"{etag}"', "Content-Type": "application/octet-stream"}
                    return self._send(200, data, headers, head)
            self._send(404, b'{"error": "not found"}', {"X-Error-Code": "EntryNotFound"}, head)

        def do_GET(self) -> None:
            self._serve(head=False)

        def do_HEAD(self) -> None:
            self._serve(head=True)

    return Handler


@contextlib.contextmanager
def fake_hub(repos: dict[str, Path]) -> Iterator[tuple[str, list[str]]]:
    """Serve ``repos`` (repo id -> folder); yields the endpoint URL and the log of requests."""
    requests: list[str] = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(repos, requests))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", requests
    finally:
        server.shutdown()
        server.server_close()
