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
    """Return the client's address, behind the proxies named in TRUSTED_PROXIES and no others."""
    address = request.META.get("REMOTE_ADDR", "")
    forwarded = request.META.get("HTTP_X_FORWARDED_FOR", "").split(",")
    hops = [hop.strip() for hop in forwarded if hop.strip()]
    # Read from the right: each proxy adds the address it was reached from, and whatever a
    # client wrote itself is further left. A hop that is not an address ends the walk at the
    # proxy that passed it on.
    while hops and _trusted(address) and _address(hops[-1]):
        address = hops.pop()
    # An IPv4 client of a dual-stack socket, or of a proxy that writes it so, as ::ffff:a.b.c.d:
    # the IPv4 address it is, not one of a single IPv6 /64 that every such client shares.
    ip = _address(address)
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return str(ip.ipv4_mapped)
    return address


def client_network(request: HttpRequest) -> str:
    """Return what the sign-in lock and the request limits count as one client."""
    address = client_address(request)
    ip = _address(address)
    # One host may hold a whole IPv6 /64: count its first address for all of it.
    if isinstance(ip, ipaddress.IPv6Address):
        return str(ipaddress.ip_network(f"{ip}/64", strict=False).network_address)
    return address
