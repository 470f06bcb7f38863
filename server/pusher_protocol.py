"""The pieces of the Pusher Channels protocol (v7) that drylocal speaks, free of any socket.

Frames are JSON text. Event and connection ``data`` is itself a JSON-encoded string (pysher breaks on
an object); ``pusher:error`` alone carries an object, as Pusher and soketi send it.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import secrets
from enum import IntEnum
from typing import Any, Iterable

__all__ = (
    "Close",
    "PROTOCOL_VERSIONS",
    "auth_token",
    "error_frame",
    "event_frame",
    "is_valid_auth",
    "new_socket_id",
    "object_frame",
    "parse_frame",
    "valid_channel_name",
    "valid_socket_id",
)

# pusher-js sends 7, pysher still sends 6; both speak what drylocal uses.
PROTOCOL_VERSIONS = range(5, 8)

_CHANNEL_NAME = re.compile(r"[-a-zA-Z0-9_=@,.;]{1,200}")
_SOCKET_ID = re.compile(r"\d+\.\d+")


class Close(IntEnum):
    """Close and error codes; the client's reaction is chosen by the range (4000s refuse, 4100s back off,
    4200s reconnect at once)."""

    APP_NOT_FOUND = 4001
    INVALID_VERSION = 4006
    UNSUPPORTED_PROTOCOL = 4007
    NO_PROTOCOL = 4008
    UNAUTHORIZED = 4009
    OVER_CAPACITY = 4100
    RECONNECT = 4200
    PONG_NOT_RECEIVED = 4201
    CLIENT_EVENT_REJECTED = 4301


def new_socket_id() -> str:
    return f"{secrets.randbelow(10**10)}.{secrets.randbelow(10**10)}"


def valid_socket_id(socket_id: str) -> bool:
    return bool(_SOCKET_ID.fullmatch(socket_id))


def valid_channel_name(name: str) -> bool:
    return bool(_CHANNEL_NAME.fullmatch(name))


def _signature(secret: str, socket_id: str, channel: str) -> str:
    return hmac.new(secret.encode(), f"{socket_id}:{channel}".encode(), hashlib.sha256).hexdigest()


def auth_token(key: str, secret: str, socket_id: str, channel: str) -> str:
    """What ``/broadcasting/auth`` answers in ``auth``: ``key:hex(HMAC-SHA256(secret, socket_id:channel))``."""
    return f"{key}:{_signature(secret, socket_id, channel)}"


def is_valid_auth(token: Any, keys: Iterable[str], secret: str, socket_id: str, channel: str) -> bool:
    if not isinstance(token, str):
        return False
    key, _, signature = token.partition(":")
    expected = _signature(secret, socket_id, channel)
    # Both comparisons run whatever the first one says, so timing tells nothing about the signature.
    key_ok = any(hmac.compare_digest(key, known) for known in keys)
    return hmac.compare_digest(signature, expected) and key_ok


def event_frame(event: str, data: Any, channel: str | None = None) -> str:
    frame: dict[str, Any] = {"event": event}
    if channel is not None:
        frame["channel"] = channel
    frame["data"] = json.dumps(data, separators=(",", ":"))
    return json.dumps(frame, separators=(",", ":"))


def object_frame(event: str, data: dict[str, Any], channel: str | None = None) -> str:
    """A frame whose ``data`` stays an object: errors, which soketi and Pusher send that way."""
    frame: dict[str, Any] = {"event": event}
    if channel is not None:
        frame["channel"] = channel
    frame["data"] = data
    return json.dumps(frame, separators=(",", ":"))


def error_frame(code: int | None, message: str) -> str:
    return object_frame("pusher:error", {"code": code, "message": message})


def parse_frame(text: str) -> tuple[str, Any, str | None] | None:
    """``(event, data, channel)``, or None when the text is not a Pusher frame. A string ``data`` holding
    JSON is decoded, since clients send both forms."""
    try:
        frame = json.loads(text)
    except ValueError:
        return None
    if not isinstance(frame, dict) or not isinstance(frame.get("event"), str):
        return None
    data = frame.get("data")
    if isinstance(data, str) and data[:1] in ("{", "["):
        try:
            data = json.loads(data)
        except ValueError:
            pass
    channel = frame.get("channel")
    return frame["event"], data, channel if isinstance(channel, str) else None
