"""Where a webhook may go: never inward (loopback, private, link-local, multicast, reserved,
shared or cloud-metadata addresses) unless its host is in WEBHOOK_ALLOW_HOSTS. Checked at create
(422) and again at delivery, by the resolver the sender connects through: a connection is only
ever opened to an address this module let through, so a name that resolves outward at create
and inward later (DNS rebinding) still never reaches inside."""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import socket
from urllib.parse import urlsplit

from aiohttp import ThreadedResolver
from aiohttp.abc import AbstractResolver, ResolveResult

from .config import Settings
from .errors import InvalidParams

log = logging.getLogger(__name__)

RESOLVE_TIMEOUT = 5.0
"""Seconds a webhook host's name may take to resolve at create."""
_METADATA = {ipaddress.ip_address("169.254.169.254"), ipaddress.ip_address("fd00:ec2::254")}

Address = ipaddress.IPv4Address | ipaddress.IPv6Address


class InwardAddress(OSError):
    """A webhook's host resolved only to addresses it may not reach."""


def is_inward(address: Address) -> bool:
    """Whether an address is one a webhook must not reach (an IPv4 address mapped into IPv6
    is judged as the IPv4 address it carries)."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return (
        not address.is_global
        or address.is_multicast
        or address.is_reserved
        or address.is_link_local
        or address in _METADATA
    )


def allowed_host(settings: Settings, host: str) -> bool:
    """Whether WEBHOOK_ALLOW_HOSTS names this host (then its addresses are not judged)."""
    return host.lower().strip("[]") in settings.webhook_allow_hosts


def _literal(host: str) -> Address | None:
    try:
        return ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return None


def _address(text: str) -> Address:
    return ipaddress.ip_address(text.split("%")[0])  # a link-local IPv6 may carry its zone


def _refused(host: str) -> InvalidParams:
    return InvalidParams(
        f"webhook_url: {host} is a loopback, private or otherwise internal address; only"
        " hosts named in FANSLYMOTION_WEBHOOK_ALLOW_HOSTS may be"
    )


async def check_destination(settings: Settings, url: str) -> None:
    """422 unless `url`'s host is allowed or resolves to outward addresses only."""
    host = urlsplit(url).hostname or ""
    if allowed_host(settings, host):
        return
    literal = _literal(host)
    if literal is not None:
        if is_inward(literal):
            raise _refused(host)
        return
    loop = asyncio.get_running_loop()
    try:
        async with asyncio.timeout(RESOLVE_TIMEOUT):
            found = await loop.getaddrinfo(host, None, type=socket.SOCK_STREAM)
    except (OSError, TimeoutError, UnicodeError):
        raise InvalidParams(f"webhook_url: the host {host} cannot be resolved") from None
    addresses = {_address(str(info[4][0])) for info in found}
    if not addresses or any(is_inward(address) for address in addresses):
        raise _refused(host)


def check_literal(settings: Settings, host: str) -> None:
    """At delivery, for a host written as an address (no resolver is asked for those)."""
    literal = _literal(host)
    if literal is not None and is_inward(literal) and not allowed_host(settings, host):
        raise InwardAddress(f"{host} is an internal address")


class GuardedResolver(AbstractResolver):
    """aiohttp's resolver for the sender: the addresses of a name, inward ones left out unless
    the name is allowed; none left is an `InwardAddress` error (the connection is not made)."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._inner = ThreadedResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        results = await self._inner.resolve(host, port, family)
        if allowed_host(self._settings, host):
            return results
        outward = [r for r in results if not is_inward(_address(r["host"]))]
        if not outward:
            log.warning("webhook: %s resolves to internal addresses only: not sent", host)
            raise InwardAddress(f"{host} resolves to internal addresses only")
        return outward

    async def close(self) -> None:
        await self._inner.close()
