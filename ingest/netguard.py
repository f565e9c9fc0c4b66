"""SSRF guard: every TCP connection goes to an address we resolved and vetted ourselves.

httpx hands the host name of each request to an httpcore *network backend*. ``GuardedBackend`` is that
backend: it resolves the name through an injectable resolver, refuses the whole host if any of its
addresses is private, loopback, link-local, multicast, reserved, unspecified or otherwise not globally
routable, and only then connects, to the vetted IP itself (so a second DNS answer cannot swap in another
address between the check and the connect). TLS still verifies and sends SNI for the host name, because
httpcore passes the origin's name to ``start_tls``.

The fetcher follows redirects itself, one request per hop, so every hop goes through this backend.

``allow_loopback`` (``settings.allow_private_addresses``) lets 127.0.0.0/8 and ::1 through, for tests and
``make demo``; RFC 1918, link-local and the other ranges stay refused even then.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any

import httpcore
from httpcore._utils import is_socket_readable

Resolver = Callable[[str, int], Awaitable[list[str]]]


class AddressBlocked(Exception):
    """The host resolves to an address we refuse to connect to. Raised before any connection."""

    def __init__(self, host: str, address: str, reason: str):
        super().__init__(f"{host} resolves to {address} ({reason}): refused")
        self.host = host
        self.address = address
        self.reason = reason


class ResolutionFailed(Exception):
    """DNS gave no usable answer."""


def address_problem(address: str, *, allow_loopback: bool) -> str | None:
    """Why ``address`` must not be connected to, or None when it is a public unicast address."""
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return "not an IP address"
    if isinstance(ip, ipaddress.IPv6Address):
        mapped = ip.ipv4_mapped or ip.sixtofour
        if ip.teredo:
            mapped = ip.teredo[1]
        if mapped is not None:
            inner = address_problem(str(mapped), allow_loopback=allow_loopback)
            return f"{inner} (embedded in {ip})" if inner else None
    if ip.is_loopback:
        return None if allow_loopback else "loopback"
    for name in ("unspecified", "multicast", "link_local", "reserved", "private"):
        if getattr(ip, f"is_{name}"):
            return name.replace("_", "-")
    if isinstance(ip, ipaddress.IPv6Address) and ip.is_site_local:
        return "site-local"
    if not ip.is_global:  # 100.64.0.0/10 (carrier-grade NAT) and other special-purpose blocks
        return "not globally routable"
    return None


async def system_resolver(host: str, port: int) -> list[str]:
    """The operating system's resolver, without blocking the event loop."""
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise ResolutionFailed(f"cannot resolve {host}: {exc.strerror or exc}") from exc
    return list(dict.fromkeys(info[4][0] for info in infos))


class StubResolver:
    """A fixed name -> addresses table (tests, benchmark). Unknown names fail like NXDOMAIN."""

    def __init__(self, table: Mapping[str, str | Iterable[str]]):
        self.table = {k.lower(): [v] if isinstance(v, str) else list(v) for k, v in table.items()}
        self.lookups: list[str] = []

    async def __call__(self, host: str, port: int) -> list[str]:
        self.lookups.append(host)
        try:
            return self.table[host.lower()]
        except KeyError:
            raise ResolutionFailed(f"cannot resolve {host}: no such host (stub)") from None


def _literal(host: str) -> str | None:
    try:
        return str(ipaddress.ip_address(host.strip("[]").split("%", 1)[0]))
    except ValueError:
        return None


class _Stream(httpcore.AsyncNetworkStream):
    """A connection's stream with its socket looked up once. httpcore's pool asks every idle connection
    whether its socket is readable each time a request starts or ends, and the anyio stream answers by
    building its whole attribute table (a ``getpeername`` call included) every time: 0.5 ms of CPU per
    page in the sustained benchmark, a tenth of the poller's."""

    def __init__(self, inner: httpcore.AsyncNetworkStream):
        self.inner = inner
        self.sock = inner.get_extra_info("socket")

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return await self.inner.read(max_bytes, timeout)

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:
        await self.inner.write(buffer, timeout)

    async def aclose(self) -> None:
        await self.inner.aclose()

    async def start_tls(self, ssl_context, server_hostname=None, timeout=None) -> httpcore.AsyncNetworkStream:
        return _Stream(await self.inner.start_tls(ssl_context, server_hostname, timeout))

    def get_extra_info(self, info: str) -> Any:
        if self.sock is not None:
            if info == "socket":
                return self.sock
            if info == "is_readable":
                return is_socket_readable(self.sock)
        return self.inner.get_extra_info(info)


class GuardedBackend(httpcore.AsyncNetworkBackend):
    """An httpcore network backend that vets every address before it connects. See the module docstring."""

    def __init__(
        self,
        resolver: Resolver | None = None,
        *,
        allow_loopback: bool = False,
        inner: httpcore.AsyncNetworkBackend | None = None,
    ):
        self.resolver = resolver or system_resolver
        self.allow_loopback = allow_loopback
        self.inner = inner or httpcore.AnyIOBackend()

    async def vet(self, host: str, port: int, timeout: float | None = None) -> list[str]:
        """The addresses of ``host`` that we may connect to; AddressBlocked if any of them is refused."""
        literal = _literal(host)
        if literal is not None:
            addresses = [literal]
        else:
            try:
                async with asyncio.timeout(timeout):
                    addresses = await self.resolver(host, port)
            except TimeoutError:
                raise ResolutionFailed(f"resolving {host} timed out") from None
            if not addresses:
                raise ResolutionFailed(f"{host} has no addresses")
        for address in addresses:
            problem = address_problem(address, allow_loopback=self.allow_loopback)
            if problem:
                raise AddressBlocked(host, address, problem)
        return addresses

    async def connect_tcp(self, host, port, timeout=None, local_address=None, socket_options=None):
        addresses = await self.vet(host, port, timeout)
        last: Exception | None = None
        for address in addresses:
            try:
                return _Stream(await self.inner.connect_tcp(
                    address, port, timeout=timeout, local_address=local_address, socket_options=socket_options
                ))
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                last = exc
        assert last is not None
        raise last

    async def connect_unix_socket(self, path, timeout=None, socket_options=None):
        raise AddressBlocked(path, path, "unix sockets are never fetched")

    async def sleep(self, seconds: float) -> None:
        await self.inner.sleep(seconds)
