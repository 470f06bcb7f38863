"""Webhooks as an attacker's probe: only the owner's keys may make the server call this machine, and
IPv6 forms that wrap a private IPv4 address are private too.

Once, webhooks to this machine were on for every account (any key could make the server POST to any
local port and path), and some IPv6 forms wrapping private addresses passed the check.
"""

from __future__ import annotations

import ipaddress

import pytest

from engine.net_guard import embedded_ipv4, is_internal

EMBED = {"input": "hello", "model": "MiniLM_L6_v2"}


@pytest.mark.parametrize("tier", ["basic", "premium"])
def test_other_accounts_may_not_send_webhooks_to_this_machine(api, tier):
    key = api.new_key(f"guest-{tier}", tier=tier, balance=1.0)
    for url in ("http://127.0.0.1:6379/", "https://localhost:8000/api/v1/client/balance", "http://[::1]:22/"):
        response = api.client.post(
            "/api/v1/client/txt2embedding", json={**EMBED, "webhook_url": url}, headers={"Authorization": f"Bearer {key}"}
        )
        assert response.status_code == 422, url
        assert "webhook_url" in response.json()["errors"]


def test_the_owner_may_still_use_a_local_receiver(api):
    response = api.post("txt2embedding", json={**EMBED, "webhook_url": "http://127.0.0.1:9/hook"})
    assert response.status_code == 200


def test_hosts_the_owner_names_are_open_to_every_account(settings):
    from tests.conftest import running_api

    with running_api(settings.model_copy(update={"webhook_allowed_hosts": ("127.0.0.1",)})) as api:
        key = api.new_key("guest", tier="basic", balance=1.0)
        response = api.client.post(
            "/api/v1/client/txt2embedding",
            json={**EMBED, "webhook_url": "http://127.0.0.1:9/hook"},
            headers={"Authorization": f"Bearer {key}"},
        )
        assert response.status_code == 200


@pytest.mark.parametrize(
    "address",
    [
        "::ffff:10.0.0.1",  # IPv4-mapped
        "::10.0.0.1",  # IPv4-compatible
        "2002:a00:1::1",  # 6to4 of 10.0.0.1
        "2002:7f00:1::1",  # 6to4 of 127.0.0.1
        "2001:0:4136:e378:8000:63bf:f5ff:fffe",  # Teredo, client 10.0.0.1
        "64:ff9b::a9fe:a9fe",  # NAT64 of 169.254.169.254 (cloud metadata)
        "64:ff9b::7f00:1",  # NAT64 of 127.0.0.1
    ],
)
def test_ipv6_forms_wrapping_private_ipv4_are_internal(address):
    assert is_internal([ipaddress.ip_address(address)])
    assert embedded_ipv4(ipaddress.ip_address(address)) is not None


def test_public_addresses_stay_public():
    assert not is_internal([ipaddress.ip_address("2606:4700:4700::1111"), ipaddress.ip_address("1.1.1.1")])
    assert not is_internal([ipaddress.ip_address("64:ff9b::101:101")])  # NAT64 of 1.1.1.1
