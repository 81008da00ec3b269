"""The client's address, behind the proxies the deployment names and no others."""

import ipaddress

from django.conf import settings
from django.http import HttpRequest


def _address(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


def _trusted(address: str) -> bool:
    ip = _address(address)
    return ip is not None and any(ip in network for network in settings.TRUSTED_PROXIES)


def client_address(request: HttpRequest) -> str:
    """Return the address of the client: the connection's, unless it is a proxy named in
    TRUSTED_PROXIES; then the nearest address in X-Forwarded-For that is not one of theirs.

    The header is read from the right: each proxy adds the address it was reached from, and
    whatever a client wrote itself is further left. A hop that is not an address ends the walk
    at the proxy that passed it on."""
    address = request.META.get("REMOTE_ADDR", "")
    forwarded = request.META.get("HTTP_X_FORWARDED_FOR", "").split(",")
    hops = [hop.strip() for hop in forwarded if hop.strip()]
    while hops and _trusted(address) and _address(hops[-1]):
        address = hops.pop()
    return address
