"""Who is calling: the client address behind trusted proxies, and network allow-lists."""

from __future__ import annotations

from collections.abc import Sequence
from ipaddress import IPv4Network, IPv6Network, ip_address

from flask import Request

Network = IPv4Network | IPv6Network


def client_address(request: Request, trusted_proxies: Sequence[Network]) -> str | None:
    """The caller's address: the peer, or, only when the peer is a trusted proxy, the nearest
    `X-Forwarded-For` hop that is not itself a trusted proxy (read right to left)."""
    hops = [request.remote_addr or ""]
    forwarded = request.headers.get("X-Forwarded-For", "")
    hops += [h.strip() for h in reversed(forwarded.split(",")) if h.strip()]
    for hop in hops:
        if not _in_any(hop, trusted_proxies):
            return hop or None
    return hops[-1] or None


def came_over_https(
    request: Request, trusted_proxies: Sequence[Network], behind_platform_router: bool
) -> bool:
    """Whether the client's connection was https: our own socket, or the `X-Forwarded-Proto`
    of a proxy we trust (a TRUSTED_PROXIES peer, or any peer when the platform's router is the
    only way in, as on Heroku). Anyone else's header is ignored."""
    if request.scheme == "https":
        return True
    trusted = behind_platform_router or _in_any(request.remote_addr or "", trusted_proxies)
    proto = request.headers.get("X-Forwarded-Proto", "").split(",")[-1].strip().lower()
    return trusted and proto == "https"


def is_allowed(address: str | None, networks: Sequence[Network]) -> bool:
    """Whether `address` lies in one of `networks`."""
    return address is not None and _in_any(address, networks)


def _in_any(address: str, networks: Sequence[Network]) -> bool:
    try:
        parsed = ip_address(address)
    except ValueError:
        return False
    return any(parsed in network for network in networks)
