"""Media behind a URL (YouTube, X, Twitch, Kick, TikTok, X Spaces, any direct media link), via yt-dlp.

``probe`` reads what the site says about the media without downloading it (duration, live or not), so
a request can be priced and refused before it is accepted; ``download`` fetches the audio for a job.
Every connection either makes (the page, each redirect, each playlist segment, the container header)
is made under ``net_guard.public_only``: resolved, checked and connected to the checked address, in
Python, on this thread. Nothing is fetched by FFmpeg's own network code, which no check could see.
"""

from __future__ import annotations

import io
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable
from urllib.parse import urlsplit

from engine.net_guard import addresses_of, is_internal, public_only

__all__ = ("FetchError", "MediaInfo", "check_url", "download", "probe")

log = logging.getLogger(__name__)

SOCKET_TIMEOUT = 30.0
_MAX_REDIRECTS = 10
_USER_AGENT = "drylocal (media fetch)"
_HEADER_BYTES = 32 * 1024 * 1024
"""Most bytes read to find a direct link's duration from a server that cannot send ranges."""
_REFUSED = "The URL points to a private, loopback or link-local address ({}); only public media can be fetched."


class FetchError(Exception):
    """The URL could not be read; the message is fit to show the user."""


@dataclass(frozen=True)
class MediaInfo:
    duration_seconds: float | None
    is_live: bool
    title: str | None
    extractor: str


class _Quiet:
    """yt-dlp's logger: its chatter goes to our debug log, not the server's stdout."""

    def debug(self, message: str) -> None:
        log.debug("yt-dlp: %s", message)

    info = debug

    def warning(self, message: str) -> None:
        log.info("yt-dlp: %s", message)

    def error(self, message: str) -> None:
        log.info("yt-dlp: %s", message)


def _options(**extra) -> dict:
    # file:// stays disabled (yt-dlp's default): a client must never read the server's own files.
    return {
        "quiet": True,
        "no_warnings": True,
        "noprogress": True,
        "noplaylist": True,
        "logger": _Quiet(),
        "socket_timeout": SOCKET_TIMEOUT,
        "format": "bestaudio/best",
        "cachedir": False,
        # HLS and DASH segments fetched by yt-dlp itself (in Python, under the guard), never by FFmpeg.
        "hls_prefer_native": True,
        "external_downloader": {},
        **extra,
    }


def check_url(url: str, allowed_hosts: Iterable[str] = ()) -> None:
    """http(s) only, to a host on the public internet (or one the owner allowed by name)."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise FetchError("Only http and https URLs can be transcribed.")
    if parts.hostname in allowed_hosts:
        return
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
        addresses = addresses_of(parts.hostname, port)
    except (OSError, ValueError) as exc:
        raise FetchError(f"The host {parts.hostname} cannot be resolved.") from exc
    if is_internal(addresses):
        raise FetchError("The URL points to a private, loopback or link-local address; only public media can be fetched.")


def _reason(exc: Exception) -> str:
    text = str(exc).replace("ERROR: ", "").strip()
    return text.splitlines()[0] if text else type(exc).__name__


def probe(url: str, allowed_hosts: Iterable[str] = ()) -> MediaInfo:
    import yt_dlp

    allowed = tuple(allowed_hosts)
    check_url(url, allowed)  # the clear message for the common case, before yt-dlp starts
    with public_only(allowed) as refused:
        try:
            with yt_dlp.YoutubeDL(_options(skip_download=True)) as ydl:
                info = ydl.extract_info(url, download=False)
        except yt_dlp.utils.DownloadError as exc:
            if refused:
                raise FetchError(_REFUSED.format(refused[0])) from exc
            raise FetchError(f"The media at this URL could not be read: {_reason(exc)}") from exc
        if info.get("_type") == "playlist":
            raise FetchError("This URL is a playlist; send the URL of one video.")
        if info.get("url"):
            check_url(info["url"], allowed)  # the media itself, where the page points elsewhere
        is_live = bool(info.get("is_live")) or info.get("live_status") in ("is_live", "is_upcoming")
        duration = info.get("duration")
        if not duration and not is_live:  # a live stream's container has no end to read
            duration = _container_duration(info.get("url"), info.get("http_headers") or {})
        if refused:
            raise FetchError(_REFUSED.format(refused[0]))
    return MediaInfo(
        duration_seconds=float(duration) if duration else None,
        is_live=is_live,
        title=info.get("title"),
        extractor=str(info.get("extractor_key") or info.get("extractor") or "generic"),
    )


def _container_duration(media_url: str | None, headers: dict[str, str]) -> float | None:
    """A direct media link has no page to say how long it is: read the container's header instead,
    through Python (ranges where the server serves them, else the first bytes), never FFmpeg's HTTP."""
    if not media_url or urlsplit(media_url).scheme not in ("http", "https"):
        return None
    try:
        import av
        import httpx
    except ImportError:
        return None
    client_headers = {"User-Agent": _USER_AGENT, **headers}
    try:
        with httpx.Client(follow_redirects=True, max_redirects=_MAX_REDIRECTS, timeout=SOCKET_TIMEOUT, headers=client_headers) as client:
            with av.open(_http_file(client, media_url)) as container:
                if container.duration:
                    return container.duration / 1_000_000
    except Exception as exc:  # an unreadable header only means the duration stays unknown
        log.info("could not read the duration of %s: %s", media_url, exc)
    return None


def _http_file(client, url: str):
    """The media as a seekable file: byte ranges on demand, or its first ``_HEADER_BYTES`` in memory."""
    first = client.get(url, headers={"Range": "bytes=0-0"})
    total = first.headers.get("content-range", "").rpartition("/")[2]
    if first.status_code == 206 and total.isdigit():
        return io.BufferedReader(_RangeReader(client, str(first.url), int(total)), buffer_size=256 * 1024)
    data = bytearray()
    with client.stream("GET", url) as response:
        response.raise_for_status()
        for chunk in response.iter_bytes():
            data += chunk
            if len(data) >= _HEADER_BYTES:
                break
    return io.BytesIO(bytes(data))


class _RangeReader(io.RawIOBase):
    def __init__(self, client, url: str, size: int) -> None:
        self.client, self.url, self.size, self.position = client, url, size, 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self.position, io.SEEK_END: self.size}[whence]
        self.position = max(0, base + offset)
        return self.position

    def tell(self) -> int:
        return self.position

    def readinto(self, buffer) -> int:
        if self.position >= self.size:
            return 0
        end = min(self.size, self.position + len(buffer)) - 1
        data = self.client.get(self.url, headers={"Range": f"bytes={self.position}-{end}"}).content[: len(buffer)]
        buffer[: len(data)] = data
        self.position += len(data)
        return len(data)


def download(
    url: str, folder: Path, on_bytes: Callable[[int, int | None], None] | None = None, allowed_hosts: Iterable[str] = ()
) -> Path:
    """Download the best audio (or the whole media where audio is not separate) into ``folder``."""
    import yt_dlp

    allowed = tuple(allowed_hosts)
    check_url(url, allowed)  # again: the address may have changed since the probe
    folder.mkdir(parents=True, exist_ok=True)

    def hook(status: dict) -> None:
        if on_bytes is not None and status.get("status") == "downloading":
            on_bytes(int(status.get("downloaded_bytes") or 0), status.get("total_bytes") or status.get("total_bytes_estimate"))

    options = _options(outtmpl={"default": str(folder / "media.%(ext)s")}, progress_hooks=[hook], overwrites=True)
    with public_only(allowed) as refused:
        try:
            with yt_dlp.YoutubeDL(options) as ydl:
                info = ydl.extract_info(url, download=True)
                path = Path(ydl.prepare_filename(info))
        except yt_dlp.utils.DownloadError as exc:
            if refused:
                raise FetchError(_REFUSED.format(refused[0])) from exc
            raise FetchError(f"The media at this URL could not be downloaded: {_reason(exc)}") from exc
        if refused:  # a segment refused mid-stream leaves a file that must not become the job's input
            raise FetchError(_REFUSED.format(refused[0]))
    if not path.is_file():
        found = sorted(folder.glob("media.*"))
        if not found:
            raise FetchError("The media at this URL could not be downloaded: nothing was received.")
        path = found[0]
    return path
