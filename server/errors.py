"""Every error leaves as dryAPI's envelope: {"data": null, "message", "errors", "statusCode"}.

``errors`` is the Laravel object {field: [messages]} by default: what the hosted service answers and
the Python SDK and MCP server parse. The setting ``error_format = "array"`` answers the docs' array of
{field, messages} instead.
"""

from __future__ import annotations

import logging

from litestar import Request, Response
from litestar.exceptions import HTTPException, NotFoundException, ValidationException
from litestar.status_codes import HTTP_500_INTERNAL_SERVER_ERROR

from engine.errors import DryError, InvalidRequest, RateLimited
from engine.redaction import redact_paths
from model_registry import RegistryError, UnknownModel

__all__ = ("envelope", "exception_handlers")

log = logging.getLogger(__name__)


def envelope(status: int, message: str, errors: dict[str, list[str]] | None, error_format: str) -> dict:
    if error_format == "object":
        # PHP encodes an empty array as [], so the hosted 401/404 carry "errors": [] too.
        shaped = errors or []
    else:
        shaped = [{"field": name, "messages": messages} for name, messages in (errors or {}).items()]
    return {"data": None, "message": message, "errors": shaped, "statusCode": status}


def _format(request: Request) -> str:
    settings = getattr(request.app.state, "settings", None)
    return getattr(settings, "error_format", "object")


def _respond(request: Request, status: int, message: str, errors=None, headers=None) -> Response:
    home = getattr(getattr(request.app.state, "settings", None), "home", None)
    message = redact_paths(message, home)
    if errors:
        errors = {field: [redact_paths(text, home) for text in texts] for field, texts in errors.items()}
    return Response(envelope(status, message, errors, _format(request)), status_code=status, headers=headers)


def _dry_error(request: Request, exc: DryError) -> Response:
    headers = None
    if isinstance(exc, RateLimited):
        headers = {"Retry-After": str(exc.retry_after), "X-RateLimit-Type": exc.limit_type}
    errors = exc.errors if isinstance(exc, InvalidRequest) else None
    return _respond(request, exc.status, exc.message, errors, headers)


def _registry_error(request: Request, exc: RegistryError) -> Response:
    if isinstance(exc, UnknownModel):
        return _respond(request, 422, "The selected model does not exist.", {"model": ["The selected model does not exist."]})
    return _respond(request, 422, str(exc), {"model": [str(exc)]})


def _validation_error(request: Request, exc: ValidationException) -> Response:
    errors: dict[str, list[str]] = {}
    for item in exc.extra or []:
        if isinstance(item, dict):
            errors.setdefault(str(item.get("key") or "request"), []).append(str(item.get("message")))
    return _respond(request, 422, errors and next(iter(errors.values()))[0] or "Validation failed", errors)


def _http_error(request: Request, exc: HTTPException) -> Response:
    message = "Not found." if isinstance(exc, NotFoundException) else exc.detail
    if exc.status_code == 413:
        message = "The request is too large."
    return _respond(request, exc.status_code, message, headers=getattr(exc, "headers", None))


def _internal_error(request: Request, exc: Exception) -> Response:
    log.exception("unhandled error on %s %s", request.method, request.url.path)
    return _respond(request, HTTP_500_INTERNAL_SERVER_ERROR, "Internal server error")


exception_handlers = {
    DryError: _dry_error,
    RegistryError: _registry_error,
    ValidationException: _validation_error,
    HTTPException: _http_error,
    Exception: _internal_error,
}
