"""What a caller without a key, or a page from another site, can learn or reach.

Once, ``/metrics`` showed every account's job counts to anyone, the MCP tool list needed no key, and
any ``Host`` header was answered (a page using DNS rebinding could read the local API).
"""

from __future__ import annotations

import httpx
import pytest

from tests.conftest import live_server, running_api


def test_metrics_need_an_owners_key(api):
    assert api.client.get("/metrics").status_code == 401
    guest = api.new_key("guest", tier="premium", balance=1.0)
    assert api.client.get("/metrics", headers={"Authorization": f"Bearer {guest}"}).status_code == 403
    assert api.client.get("/metrics", headers=api.headers).status_code == 200


def test_metrics_public_by_setting_for_a_local_scraper(settings):
    with running_api(settings.model_copy(update={"metrics_public": True})) as api:
        assert api.client.get("/metrics").status_code == 200


@pytest.mark.parametrize("host", ["attacker.example", "attacker.example:8000", "localhost.attacker.example"])
def test_a_rebound_host_name_is_refused(api, host):
    response = api.client.get("/api/v1/client/balance", headers={**api.headers, "Host": host})
    assert response.status_code == 421 and "allowed_hosts" in response.json()["message"]


@pytest.mark.parametrize("host", ["localhost:8000", "127.0.0.1:8000", "[::1]:8000", "192.168.1.20:8000", "app.localhost"])
def test_addresses_and_local_names_are_answered(api, host):
    assert api.client.get("/api/v1/client/balance", headers={**api.headers, "Host": host}).status_code == 200


def test_named_hosts_are_answered(settings):
    with running_api(settings.model_copy(update={"allowed_hosts": ("gpu-box.lan",)})) as api:
        assert api.client.get("/api/v1/client/balance", headers={**api.headers, "Host": "gpu-box.lan:8000"}).status_code == 200


def test_mcp_tool_list_needs_a_key(settings):
    with live_server(settings) as server:
        listing = httpx.post(
            f"{server.url}/mcp/",
            json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"},
            headers={"Accept": "application/json, text/event-stream"},
        )
        assert listing.status_code == 401


def test_error_messages_carry_no_server_paths(api):
    home = str(api.engine.settings.home)
    body = {"prompt": "a cat", "model": "Flux1schnell", "width": 512, "height": 512, "seed": 1}
    refused = api.post("txt2img", json=body)
    assert refused.status_code == 422 and home not in refused.text and "$DRYLOCAL_HOME/models/Flux1schnell" in refused.text
    job = api.engine.jobs.create(
        api.engine.accounts.authenticate(api.key), task="txt2embedding", model="MiniLM_L6_v2", params={}, inputs={}, price=0.0
    )
    api.engine.jobs.fail(job.id, "PROCESSING_ERROR", f"Invalid data found when processing input: '{home}/inputs/{job.id}/media.mp4' (from /usr/lib/x/libav.so)")
    message = api.get(f"request-status/{job.id}").json()["data"]["error_message"]
    assert home not in message and "/usr/lib" not in message and "media.mp4" in message
