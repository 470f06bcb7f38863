"""One rate limiter in front of every entry point: REST, the OpenAI routes and MCP tools share a key's
windows, and every 429 carries Retry-After.

Once, a Basic key refused with 429 on the REST and OpenAI routes ran 46 embedding jobs in 45 s through
the MCP tools, and the OpenAI routes' 429 had no Retry-After.
"""

from __future__ import annotations

import asyncio

from tests.conftest import API, live_server
from tests.test_mcp import session_call

EMBED = {"input": "hello", "model": "MiniLM_L6_v2"}


def _exhaust_rest(client, url: str, key: str) -> None:
    """Basic: ten txt2embedding requests a minute."""
    for _ in range(10):
        assert client.post(f"{url}{API}/txt2embedding", json=EMBED, headers={"Authorization": f"Bearer {key}"}).status_code == 200


def test_mcp_tools_count_against_the_rest_limits(settings):
    import httpx

    with live_server(settings) as server:
        key, _ = server.new_key("basic-mcp", tier="basic", balance=1.0)
        with httpx.Client(timeout=30) as client:
            _exhaust_rest(client, server.url, key)

        async def calls(session):
            return await session.call_tool("text_to_embedding", {**EMBED, "return_result_in_response": True})

        refused = asyncio.run(session_call(server.url, key, calls))
        assert refused.is_error and "Retry after" in refused.content[0].text
        jobs = server.engine.jobs.db.query("SELECT COUNT(*) AS n FROM jobs")[0]["n"]
        assert jobs == 10  # the refused tool call made no job


def test_mcp_calls_exhaust_the_window_the_rest_route_then_refuses(settings):
    import httpx

    with live_server(settings) as server:
        key, _ = server.new_key("basic-mcp2", tier="basic", balance=1.0)

        async def calls(session):
            return [
                await session.call_tool("text_to_embedding_price", {"input": "hello", "model": "MiniLM_L6_v2"})
                for _ in range(50)
            ]

        answers = asyncio.run(session_call(server.url, key, calls))
        assert not any(a.is_error for a in answers)
        with httpx.Client(timeout=30) as client:
            refused = client.post(
                f"{server.url}{API}/txt2embedding/price-calculation", json=EMBED, headers={"Authorization": f"Bearer {key}"}
            )
        assert refused.status_code == 429 and int(refused.headers["Retry-After"]) > 0


def test_openai_429_has_retry_after(settings):
    import httpx

    with live_server(settings) as server:
        key, _ = server.new_key("basic-openai", tier="basic", balance=1.0)
        headers = {"Authorization": f"Bearer {key}"}
        with httpx.Client(timeout=30) as client:
            _exhaust_rest(client, server.url, key)
            refused = client.post(f"{server.url}/v1/embeddings", json={"input": "hello", "model": "MiniLM_L6_v2"}, headers=headers)
        assert refused.status_code == 429
        assert refused.json()["error"]["type"] == "rate_limit_error" and int(refused.headers["Retry-After"]) > 0
