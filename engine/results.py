"""Job outputs on disk and the signed, expiring URLs that serve them."""

from __future__ import annotations

import hashlib
import hmac
import os
import shutil
import time
from typing import Callable
from pathlib import Path
from urllib.parse import quote

from engine.errors import Forbidden, NotFound

__all__ = ("ResultSigner", "ResultStore")


class ResultStore:
    def __init__(self, root: Path) -> None:
        self.root = root

    def write(self, job_id: str, filename: str, data: bytes) -> str:
        """Write atomically (temp file, fsync, rename); returns the path relative to the store."""
        folder = self.root / job_id
        folder.mkdir(parents=True, exist_ok=True)
        target = folder / Path(filename).name
        partial = target.with_name(target.name + ".part")
        with open(partial, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(partial, target)
        return f"{job_id}/{target.name}"

    def path_of(self, relative: str) -> Path:
        """The file for a relative path; anything resolving outside the store is refused."""
        root = self.root.resolve()
        target = (root / relative).resolve()
        if root not in target.parents or not target.is_file():
            raise NotFound("Result not found.")
        return target

    def sweep_partials(self) -> int:
        """At start: a crash mid-write leaves ``.part`` files; their jobs were never marked done and
        run again, so the halves are only litter."""
        count = 0
        for partial in self.root.glob("*/*.part") if self.root.is_dir() else ():
            partial.unlink(missing_ok=True)
            count += 1
        return count

    def remove(self, job_id: str) -> None:
        shutil.rmtree(self.root / job_id, ignore_errors=True)


class ResultSigner:
    """HMAC-SHA256 over ``path + "\\n" + expires`` with a secret kept in the database."""

    def __init__(self, secret: str, base_url: str, ttl_seconds: int, epoch_of: Callable[[str], str] | None = None) -> None:
        self._key = secret.encode()
        self.base_url = base_url.rstrip("/")
        self.ttl = ttl_seconds
        self.epoch_of = epoch_of
        """The owner's state a URL is bound to (the account's revocations): when it changes, the URLs
        signed before stop working."""

    def url(self, relative: str, now: float | None = None, epoch: str | None = None) -> str:
        """``epoch``: the owner's state when the caller knows it already (else ``epoch_of`` finds it)."""
        expires = int((now or time.time()) + self.ttl)
        return f"{self.base_url}/results/{quote(relative)}?expires={expires}&signature={self._sign(relative, expires, epoch)}"

    def verify(self, relative: str, expires: str | None, signature: str | None, now: float | None = None) -> None:
        if not expires or not signature or not (expires.isascii() and expires.isdigit()):
            raise Forbidden("Invalid signature.")
        # Bytes, not str: compare_digest refuses non-ASCII strings, and a forged URL may hold any.
        given = signature.encode("utf-8", "surrogatepass")
        if not hmac.compare_digest(self._sign(relative, int(expires)).encode(), given):
            raise Forbidden("Invalid signature.")
        if int(expires) < (now or time.time()):
            raise Forbidden("This result URL has expired.")

    def _sign(self, relative: str, expires: int, epoch: str | None = None) -> str:
        if epoch is None:
            epoch = self.epoch_of(relative) if self.epoch_of is not None else ""
        message = f"{relative}\n{expires}\n{epoch}".encode("utf-8", "surrogatepass")
        return hmac.new(self._key, message, hashlib.sha256).hexdigest()
