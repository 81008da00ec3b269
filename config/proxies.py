"""The client's address, behind the proxies the deployment names and no others."""

import ipaddress

from django.conf import settings
from django.http import HttpRequest


def _trusted(address: str) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in network for network in settings.TRUSTED_PROXIES)


def client_address(request: HttpRequest) -> str:
    """Return the address of the client: the connection's, unless it is a proxy named in
    TRUSTED_PROXIES; then the nearest address in X-Forwarded-For that is not one of theirs.

    The header is read from the right: each proxy adds the address it was reached from, and
    whatever a client wrote itself is further left."""
    address = request.META.get("REMOTE_ADDR", "")
    forwarded = request.META.get("HTTP_X_FORWARDED_FOR", "").split(",")
    hops = [hop.strip() for hop in forwarded if hop.strip()]
    while hops and _trusted(address):
        address = hops.pop()
    return address
