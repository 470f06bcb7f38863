"""Which network addresses a URL given by a client may make drylocal reach (SSRF protection).

Webhooks and media URLs come from clients, and the server that fetches them sits inside the user's
network: loopback, private, link-local (cloud metadata), multicast and reserved addresses are out of
bounds unless the owner allows a host by name.
"""

from __future__ import annotations

import ipaddress
import socket
from typing import Iterable

__all__ = ("addresses_of", "is_internal")


def addresses_of(host: str, port: int) -> set[ipaddress.IPv4Address | ipaddress.IPv6Address]:
    """Every address ``host`` resolves to; raises OSError when it does not resolve."""
    return {ipaddress.ip_address(info[4][0].split("%", 1)[0]) for info in socket.getaddrinfo(host, port)}


def is_internal(addresses: Iterable[ipaddress.IPv4Address | ipaddress.IPv6Address]) -> bool:
    """True when any address is not on the public internet."""
    for address in addresses:
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        if not address.is_global or address.is_multicast:
            return True
    return False
