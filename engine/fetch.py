"""Media behind a URL (YouTube, X, Twitch, Kick, TikTok, X Spaces, any direct media link), via yt-dlp.

``probe`` reads what the site says about the media without downloading it (duration, live or not), so
a request can be priced and refused before it is accepted; ``download`` fetches the audio for a job.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable
from urllib.parse import urljoin, urlsplit

from engine.net_guard import addresses_of, is_internal

__all__ = ("FetchError", "MediaInfo", "check_url", "download", "probe")

log = logging.getLogger(__name__)

SOCKET_TIMEOUT = 30.0
_MAX_REDIRECTS = 10
_USER_AGENT = "drylocal (media fetch)"


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


def check_redirects(url: str, allowed_hosts: Iterable[str] = ()) -> None:
    """Walk the URL's redirects one hop at a time, checking every hop before it is requested: yt-dlp
    follows redirects on its own and would reach an internal address a public URL redirects to. (The
    original URL still goes to yt-dlp, whose extractors need it.)"""
    import httpx

    allowed = tuple(allowed_hosts)
    with httpx.Client(follow_redirects=False, timeout=SOCKET_TIMEOUT, headers={"User-Agent": _USER_AGENT}) as client:
        for _ in range(_MAX_REDIRECTS + 1):
            check_url(url, allowed)
            try:
                response = client.head(url)
            except httpx.HTTPError:
                return  # the site may not answer HEAD; yt-dlp's own request will tell
            if not response.is_redirect or "location" not in response.headers:
                return
            url = urljoin(url, response.headers["location"])
    raise FetchError(f"The URL redirects more than {_MAX_REDIRECTS} times.")


def _reason(exc: Exception) -> str:
    text = str(exc).replace("ERROR: ", "").strip()
    return text.splitlines()[0] if text else type(exc).__name__


def probe(url: str, allowed_hosts: Iterable[str] = ()) -> MediaInfo:
    import yt_dlp

    check_redirects(url, allowed_hosts)
    try:
        with yt_dlp.YoutubeDL(_options(skip_download=True)) as ydl:
            info = ydl.extract_info(url, download=False)
    except yt_dlp.utils.DownloadError as exc:
        raise FetchError(f"The media at this URL could not be read: {_reason(exc)}") from exc
    if info.get("_type") == "playlist":
        raise FetchError("This URL is a playlist; send the URL of one video.")
    if info.get("url"):
        check_url(info["url"], allowed_hosts)  # the media itself, where the page points elsewhere
    is_live = bool(info.get("is_live")) or info.get("live_status") in ("is_live", "is_upcoming")
    duration = info.get("duration")
    if not duration and not is_live:  # a live stream's container has no end to read
        duration = _container_duration(info.get("url"), info.get("http_headers") or {})
    return MediaInfo(
        duration_seconds=float(duration) if duration else None,
        is_live=is_live,
        title=info.get("title"),
        extractor=str(info.get("extractor_key") or info.get("extractor") or "generic"),
    )


def _container_duration(media_url: str | None, headers: dict[str, str]) -> float | None:
    """A direct media link has no page to say how long it is: read the container's header instead."""
    if not media_url or urlsplit(media_url).scheme not in ("http", "https"):
        return None
    try:
        import av
    except ImportError:
        return None
    options = {"timeout": str(int(SOCKET_TIMEOUT * 1_000_000))}
    if headers:
        options["headers"] = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    try:
        with av.open(media_url, options=options, timeout=SOCKET_TIMEOUT) as container:
            if container.duration:
                return container.duration / 1_000_000
    except Exception as exc:  # an unreadable header only means the duration stays unknown
        log.info("could not read the duration of %s: %s", media_url, exc)
    return None


def download(
    url: str, folder: Path, on_bytes: Callable[[int, int | None], None] | None = None, allowed_hosts: Iterable[str] = ()
) -> Path:
    """Download the best audio (or the whole media where audio is not separate) into ``folder``."""
    import yt_dlp

    check_redirects(url, allowed_hosts)  # again: the address may have changed since the probe
    folder.mkdir(parents=True, exist_ok=True)

    def hook(status: dict) -> None:
        if on_bytes is not None and status.get("status") == "downloading":
            on_bytes(int(status.get("downloaded_bytes") or 0), status.get("total_bytes") or status.get("total_bytes_estimate"))

    options = _options(outtmpl={"default": str(folder / "media.%(ext)s")}, progress_hooks=[hook], overwrites=True)
    try:
        with yt_dlp.YoutubeDL(options) as ydl:
            info = ydl.extract_info(url, download=True)
            path = Path(ydl.prepare_filename(info))
    except yt_dlp.utils.DownloadError as exc:
        raise FetchError(f"The media at this URL could not be downloaded: {_reason(exc)}") from exc
    if not path.is_file():
        found = sorted(folder.glob("media.*"))
        if not found:
            raise FetchError("The media at this URL could not be downloaded: nothing was received.")
        path = found[0]
    return path
