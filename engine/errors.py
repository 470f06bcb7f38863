"""The engine's domain errors; the server maps each class to its dryAPI answer once (server/errors.py).

    DryError                      message, status
    ├── InvalidRequest  (422)     per-field messages: {field: [messages]}
    │   └── InsufficientBalance   errors on "balance", as the SDK detects it
    ├── Unauthorized    (401)
    ├── Forbidden       (403)     suspended account, tampered or expired result URL
    ├── NotFound        (404)
    └── RateLimited     (429)     retry_after seconds, limit_type "minute" | "day"

Jobs that fail carry one of dryAPI's webhook error codes (JobFailure.code).
"""

from __future__ import annotations

__all__ = (
    "DryError",
    "Forbidden",
    "InsufficientBalance",
    "InvalidRequest",
    "JobFailure",
    "NotFound",
    "RateLimited",
    "Unauthorized",
)


class DryError(Exception):
    status = 500

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidRequest(DryError):
    status = 422

    def __init__(self, errors: dict[str, list[str]], message: str | None = None) -> None:
        first = next(iter(errors.values()))[0] if errors else "Validation failed"
        super().__init__(message or first)
        self.errors = errors

    @classmethod
    def on(cls, field: str, message: str) -> "InvalidRequest":
        return cls({field: [message]})


class InsufficientBalance(InvalidRequest):
    def __init__(self) -> None:
        super().__init__({"balance": ["Not enough balance."]}, "Not enough balance.")


class Unauthorized(DryError):
    status = 401

    def __init__(self, message: str = "Unauthorized user.") -> None:
        super().__init__(message)


class Forbidden(DryError):
    status = 403


class NotFound(DryError):
    status = 404


class RateLimited(DryError):
    status = 429

    def __init__(self, retry_after: int, limit_type: str) -> None:
        super().__init__("Too Many Attempts.")
        self.retry_after = retry_after
        self.limit_type = limit_type


class JobFailure(Exception):
    """Raised inside a pipeline or the scheduler to fail a job with a dryAPI error code.

    Codes: WORKER_TIMEOUT, PROCESSING_ERROR, CONTEXT_LENGTH_EXCEEDED, INVALID_INPUT, UNKNOWN_ERROR
    (the webhook docs' list) and OUT_OF_MEMORY for a model that cannot fit the memory budget.
    """

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
