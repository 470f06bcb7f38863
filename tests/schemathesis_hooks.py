"""A Schemathesis check for drylocal: every refusal on a dryAPI route is the dryAPI error envelope."""

from __future__ import annotations

import schemathesis

# Routes outside the dryAPI envelope: OpenAI's (its own error shape) and signed result downloads.
OWN_ERROR_SHAPE = ("/v1/", "/results/", "/mcp")


@schemathesis.check
def dryapi_error_envelope(ctx, response, case) -> None:
    if response.status_code < 400 or case.path.startswith(OWN_ERROR_SHAPE):
        return None
    body = response.json()
    if not (isinstance(body, dict) and {"message", "statusCode"} <= set(body) and body["statusCode"] == response.status_code):
        raise AssertionError(f"not the dryAPI error envelope: {body}")
    return None
