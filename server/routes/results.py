"""Serves result files behind signed, expiring URLs (no API key: the signature is the credential)."""

from __future__ import annotations

import mimetypes

from litestar import get
from litestar.response import File

from litestar.di import NamedDependency
from litestar.params import FromPath, FromQuery
from engine import Engine

__all__ = ("ROUTES",)


@get("/results/{path:path}", operation_id="result_file", summary="Download a job result (signed URL)")
async def result_file(
    path: FromPath[str],
    engine: NamedDependency[Engine],
    expires: FromQuery[str | None] = None,
    signature: FromQuery[str | None] = None,
) -> File:
    relative = path.lstrip("/")
    target = engine.result_file(relative, expires, signature)
    media_type = mimetypes.guess_type(target.name)[0] or "application/octet-stream"
    return File(path=target, filename=target.name, media_type=media_type, content_disposition_type="inline")


ROUTES = [result_file]
