"""``POST /broadcasting/auth``: signs a socket into its account's private WebSocket channel.

pusher-js, laravel-echo and pysher post this form-encoded while the docs show JSON; both are read.
"""

from __future__ import annotations

from litestar import Request, post
from litestar.di import NamedDependency

from engine import Account
from engine.errors import Forbidden, InvalidRequest
from server import pusher_protocol as pusher
from server.auth import bearer_key
from server.body import read_body
from server.realtime import PusherHub

__all__ = ("ROUTES",)


@post("/broadcasting/auth", operation_id="broadcasting_auth", summary="Authorize a private WebSocket channel", status_code=200)
async def broadcasting_auth(request: Request, account: NamedDependency[Account]) -> dict:
    fields = (await read_body(request)).fields
    socket_id, channel = fields.get("socket_id"), fields.get("channel_name")
    errors: dict[str, list[str]] = {}
    if not isinstance(socket_id, str) or not pusher.valid_socket_id(socket_id):
        errors["socket_id"] = ["The socket id field must be a Pusher socket id such as 1234.5678."]
    if not isinstance(channel, str) or not pusher.valid_channel_name(channel):
        errors["channel_name"] = ["The channel name field must be a valid channel name."]
    if errors:
        raise InvalidRequest(errors)
    hub: PusherHub = request.app.state.pusher
    token = hub.authorize(account.client_id, socket_id, channel, key_digest=hub.engine.accounts.digest(bearer_key(request) or ""))
    if token is None:
        raise Forbidden(f"This key may only subscribe to private-client.{account.client_id}.")
    return {"auth": token}


ROUTES = [broadcasting_auth]
