"""Which network addresses a URL given by a client may make drylocal reach (SSRF protection).

Webhooks and media URLs come from clients, and the server that fetches them sits inside the user's
network: loopback, private, link-local (cloud metadata), multicast and reserved addresses are out of
bounds unless the owner allows a host by name.
"""

from __future__ import annotations

import contextlib
import ipaddress
import socket
import threading
from typing import Iterable, Iterator

__all__ = ("InternalAddressRefused", "addresses_of", "embedded_ipv4", "is_internal", "public_only")


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


class InternalAddressRefused(socket.gaierror):
    """A name resolution inside ``public_only`` that yielded a non-public address."""


_guard = threading.local()
_resolve = socket.getaddrinfo


def _guarded_getaddrinfo(host, port, *args, **kwargs):
    results = _resolve(host, port, *args, **kwargs)
    allowed = getattr(_guard, "allowed", None)
    if allowed is None or (isinstance(host, (str, bytes)) and _name(host) in allowed):
        return results
    addresses = [ipaddress.ip_address(str(info[4][0]).split("%", 1)[0]) for info in results]
    if is_internal(addresses):
        _guard.refused.append(_name(host))
        raise InternalAddressRefused(
            socket.EAI_NONAME, f"{_name(host)} resolves to a private, loopback or link-local address"
        )
    return results


def _name(host) -> str:
    return (host.decode() if isinstance(host, bytes) else str(host)).strip("[]").lower()


@contextlib.contextmanager
def public_only(allowed_hosts: Iterable[str] = ()) -> Iterator[list[str]]:
    """On this thread, for the block: every name resolution, so every connection Python code makes
    (yt-dlp's page, its redirects, each playlist segment; httpx; urllib), may only reach public
    addresses or the hosts named. The connection goes to the very addresses checked, so a name
    cannot resolve to a public address for the check and an internal one for the connect. Yields the
    list of hosts refused meanwhile, so a caller can say why a download failed."""
    if socket.getaddrinfo is not _guarded_getaddrinfo:
        socket.getaddrinfo = _guarded_getaddrinfo
    previous = (getattr(_guard, "allowed", None), getattr(_guard, "refused", None))
    _guard.allowed = frozenset(_name(h) for h in allowed_hosts)
    _guard.refused = []
    try:
        yield _guard.refused
    finally:
        _guard.allowed, _guard.refused = previous
