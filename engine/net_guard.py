"""Which network addresses a URL given by a client may make drylocal reach (SSRF protection).

Webhooks and media URLs come from clients, and the server that fetches them sits inside the user's
network: loopback, private, link-local (cloud metadata), multicast and reserved addresses are out of
bounds unless the owner allows a host by name.
"""

from __future__ import annotations

import ipaddress
import socket
from typing import Iterable

__all__ = ("addresses_of", "embedded_ipv4", "is_internal")


def addresses_of(host: str, port: int) -> set[ipaddress.IPv4Address | ipaddress.IPv6Address]:
    """Every address ``host`` resolves to; raises OSError when it does not resolve."""
    return {ipaddress.ip_address(info[4][0].split("%", 1)[0]) for info in socket.getaddrinfo(host, port)}


_NAT64 = (ipaddress.ip_network("64:ff9b::/96"), ipaddress.ip_network("64:ff9b:1::/48"))


def embedded_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 transition form carries (mapped, compatible, 6to4, Teredo's client,
    NAT64), which is where a packet to it really goes."""
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address.teredo is not None:
        return address.teredo[1]
    packed = int(address)
    if any(address in network for network in _NAT64) or (packed >> 32 == 0 and packed > 1):
        return ipaddress.IPv4Address(packed & 0xFFFFFFFF)
    return None


def is_internal(addresses: Iterable[ipaddress.IPv4Address | ipaddress.IPv6Address]) -> bool:
    """True when any address is not on the public internet, IPv4 wrapped in IPv6 included."""
    for address in addresses:
        if isinstance(address, ipaddress.IPv6Address):
            inner = embedded_ipv4(address)
            if inner is not None and (not inner.is_global or inner.is_multicast):
                return True
        if not address.is_global or address.is_multicast:
            return True
    return False
