"""The MCP server driven by the official ``mcp`` SDK client over streamable HTTP on 127.0.0.1."""

from __future__ import annotations

import asyncio
import json

import httpx
import pytest

from server.mcp import TOOLS
from tests.conftest import live_server


@pytest.fixture
def live(settings):
    with live_server(settings) as server:
        key, _ = server.new_key("mcp", tier="premium", balance=1.0)
        yield server.url, key


async def session_call(base: str, key: str, calls):
    from mcp import ClientSession
    from mcp.client.streamable_http import streamable_http_client

    async with httpx.AsyncClient(headers={"Authorization": f"Bearer {key}"}, timeout=60) as http:
        async with streamable_http_client(f"{base}/mcp", http_client=http) as streams:
            async with ClientSession(streams[0], streams[1]) as session:
                await session.initialize()
                return await calls(session)


def test_tools_are_listed_and_an_embedding_job_runs(live):
    base, key = live

    async def calls(session):
        tools = {tool.name: tool for tool in (await session.list_tools()).tools}
        done = await session.call_tool("text_to_embedding", {"input": "hello there", "model": "MiniLM_L6_v2", "return_result_in_response": True})
        status = json.loads(done.content[0].text)
        again = await session.call_tool("check_job_status", {"request_id": status["request_id"]})
        price = await session.call_tool("text_to_embedding_price", {"input": "hello there", "model": "MiniLM_L6_v2"})
        balance = await session.call_tool("get_balance", {})
        return tools, status, json.loads(again.content[0].text), json.loads(price.content[0].text), json.loads(balance.content[0].text)

    tools, status, again, price, balance = asyncio.run(session_call(base, key, calls))
    expected = set(TOOLS) | {f"{name}_price" for name in TOOLS} | {"get_available_models", "get_balance", "check_job_status"}
    assert expected <= set(tools)
    assert "prompt" in tools["text_to_image"].input_schema["properties"]
    assert status["status"] == "done" and len(json.loads(status["result"])["data"][0]["embedding"]) == 384
    assert again["status"] == "done" and again["request_id"] == status["request_id"]
    assert price["price"] > 0 and balance["balance"] < 1.0


def test_a_wrong_key_is_refused_before_any_tool_is_listed(live):
    base, _ = live
    for headers in ({"Authorization": "Bearer dl_wrong"}, {}):
        listing = httpx.post(
            f"{base}/mcp/",
            json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"},
            headers={**headers, "Accept": "application/json, text/event-stream"},
        )
        assert listing.status_code == 401 and listing.json()["message"] == "Unauthorized user."


def test_bad_input_comes_back_as_a_tool_error_with_the_reason(live):
    base, key = live

    async def calls(session):
        return await session.call_tool("text_to_embedding", {"input": [], "model": "MiniLM_L6_v2"})

    result = asyncio.run(session_call(base, key, calls))
    assert result.is_error and "input" in result.content[0].text
