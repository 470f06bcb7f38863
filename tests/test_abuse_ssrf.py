"""The media downloader as an attacker's probe into the server's network.

Once, redirects were checked with HEAD requests while yt-dlp followed GET redirects, and stream
playlists' segments were never checked: internal hosts received requests and their answers were
saved as job input. Now every connection the fetch makes is resolved, checked and pinned on its
thread (``net_guard.public_only``): the internal server below must never see a request.
"""

from __future__ import annotations

import http.server
import json
import threading

import pytest

from tests.test_audio import api_audio, embedded_models, media_server  # noqa: F401  (fixtures)


class _Recorder(http.server.BaseHTTPRequestHandler):
    hits: list[str] = []

    def log_message(self, *args):
        pass

    def do_GET(self):
        type(self).hits.append(self.path)
        self.send_response(200)
        self.send_header("Content-Type", "video/mp4")
        self.end_headers()
        self.wfile.write(b"secret")

    do_HEAD = do_GET


@pytest.fixture
def internal_host():
    """A server on 127.0.0.2: loopback, and not among the hosts the test's owner allowed."""
    _Recorder.hits = []
    server = http.server.ThreadingHTTPServer(("127.0.0.2", 0), _Recorder)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.2:{server.server_address[1]}", _Recorder.hits
    server.shutdown()
    server.server_close()


def _get_only_redirect(target: str):
    """HEAD answers 200 as media; only GET redirects (what the old HEAD-based check could not see)."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_HEAD(self):
            self.send_response(200)
            self.send_header("Content-Type", "video/mp4")
            self.end_headers()

        def do_GET(self):
            self.send_response(302)
            self.send_header("Location", target)
            self.end_headers()

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def test_a_get_only_redirect_to_an_internal_host_is_never_followed(api_audio, internal_host):
    target, hits = internal_host
    server = _get_only_redirect(f"{target}/admin/secret.mp4")
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/watch.mp4"
        response = api_audio.post("vid2txt", json={"video_url": url, "include_ts": False, "model": "WhisperBase"})
        if response.status_code == 200:  # refused later, at download: the job fails, nothing is saved
            status = api_audio.wait(response.json()["data"]["request_id"], timeout=120)
            assert status["status"] == "error", status
            assert "private, loopback or link-local" in status["error_message"]
        else:
            assert response.status_code == 422
            assert "private, loopback or link-local" in json.dumps(response.json())
    finally:
        server.shutdown()
        server.server_close()
    assert hits == []


def test_playlist_segments_on_an_internal_host_are_never_fetched(api_audio, media_server, internal_host):
    root, base = media_server
    target, hits = internal_host
    (root / "talk.m3u8").write_text(
        "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:6\n#EXT-X-MEDIA-SEQUENCE:0\n"
        f"#EXTINF:6.0,\n{target}/seg0.ts\n#EXTINF:6.0,\n{target}/seg1.ts\n#EXT-X-ENDLIST\n"
    )
    response = api_audio.post("aud2txt", json={"audio_url": f"{base}/talk.m3u8", "include_ts": False, "model": "WhisperBase"})
    if response.status_code == 200:
        status = api_audio.wait(response.json()["data"]["request_id"], timeout=120)
        assert status["status"] == "error", status
        assert "private, loopback or link-local" in status["error_message"]
    else:
        assert response.status_code == 422, response.json()
    assert hits == []


def test_the_guard_pins_what_it_checked(internal_host):
    """Inside the guard, a name that resolves internally cannot be connected to at all."""
    import socket

    import httpx

    from engine.net_guard import InternalAddressRefused, public_only

    target, hits = internal_host
    with public_only(("127.0.0.1",)) as refused:
        with pytest.raises(httpx.ConnectError):
            httpx.get(target.replace("127.0.0.2", "localhost"))
        with pytest.raises(InternalAddressRefused):
            socket.getaddrinfo("127.0.0.2", 80)
    assert refused == ["localhost", "127.0.0.2"]
    socket.getaddrinfo("127.0.0.2", 80)  # outside the block (and on other threads) nothing changes
    assert hits == []
