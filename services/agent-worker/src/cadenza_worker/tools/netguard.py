"""Which addresses `http_request` may reach: public ones only, checked AFTER DNS resolution
(a public name can point at 127.0.0.1 or the cloud metadata service)."""

from __future__ import annotations

import asyncio
import ipaddress
import socket

from cadenza_events import NonRetryableError, RetryableError

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

_NAT64 = ipaddress.ip_network("64:ff9b::/96")


class BlockedAddressError(NonRetryableError):
    """The target resolves to an address workflows must not reach."""

    code = "blocked_address"


class DnsError(RetryableError):
    code = "dns_error"


def _embedded_ipv4(ip: IPAddress) -> ipaddress.IPv4Address | None:
    """IPv6 forms that reach an IPv4 host (mapped, 6to4, NAT64): judge that host instead."""
    if not isinstance(ip, ipaddress.IPv6Address):
        return None
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip.sixtofour is not None:
        return ip.sixtofour
    if ip in _NAT64:
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return None


def blocked_reason(ip: IPAddress) -> str | None:
    """Why ``ip`` is refused (`loopback`, `private`, …), or None when it is public."""
    inner = _embedded_ipv4(ip)
    if inner is not None:
        return blocked_reason(inner)
    for kind in ("unspecified", "loopback", "link_local", "multicast", "private", "reserved"):
        if getattr(ip, f"is_{kind}"):
            return kind
    if not ip.is_global:  # e.g. 100.64.0.0/10 (carrier-grade NAT, some metadata services)
        return "non_global"
    return None


async def resolve(host: str, port: int) -> list[IPAddress]:
    """All addresses ``host`` resolves to (literals pass through), in resolver order."""
    loop = asyncio.get_running_loop()
    try:
        infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        if exc.errno in (socket.EAI_NONAME, getattr(socket, "EAI_NODATA", -5)):
            raise NonRetryableError(
                f"cannot resolve {host!r}: {exc.strerror}", code="dns_error"
            ) from exc
        raise DnsError(f"cannot resolve {host!r}: {exc.strerror}") from exc
    out: list[IPAddress] = []
    for _family, _type, _proto, _canon, sockaddr in infos:
        ip = ipaddress.ip_address(str(sockaddr[0]).split("%", 1)[0])  # drop an IPv6 zone id
        if ip not in out:
            out.append(ip)
    if not out:
        raise DnsError(f"{host!r} resolved to no address")
    return out


async def resolve_allowed(host: str, port: int, *, allow_private: bool) -> list[IPAddress]:
    """The addresses to connect to, in order. Every resolved address must be allowed: a
    name that mixes public and internal answers is refused rather than raced."""
    addresses = await resolve(host, port)
    if not allow_private:
        for ip in addresses:
            reason = blocked_reason(ip)
            if reason is not None:
                raise BlockedAddressError(
                    f"refusing {host!r}: it resolves to {ip} ({reason.replace('_', '-')} "
                    "address); set CADENZA_WORKER_HTTP_ALLOW_PRIVATE=true to allow"
                )
    return addresses
