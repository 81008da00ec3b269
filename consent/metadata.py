"""What the audit log may keep about the request behind a change: never a raw IP address."""

import ipaddress
from dataclasses import dataclass

from django.http import HttpRequest

from config.proxies import client_address


@dataclass(frozen=True)
class RequestMeta:
    ip_prefix: str = ""
    user_agent: str = ""
    gpc: bool = False

    @classmethod
    def from_request(cls, request: HttpRequest) -> "RequestMeta":
        return cls(
            ip_prefix=truncate_ip(client_address(request)),
            # A NUL, which only a client that writes its own headers sends, no column can store.
            user_agent=request.headers.get("User-Agent", "").replace("\x00", "")[:200],
            gpc=request.headers.get("Sec-GPC", "").strip() == "1",
        )


def truncate_ip(address: str) -> str:
    """Return the /24 (IPv4) or /48 (IPv6) network of an address, or "" if it is not one."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return ""
    prefix = 24 if ip.version == 4 else 48
    return str(ipaddress.ip_network(f"{ip}/{prefix}", strict=False))
