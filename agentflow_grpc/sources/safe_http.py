"""An outbound HTTP client that cannot be aimed at private networks (SSRF guard).

Threat: the `http` node calls URLs built from user templates. Without a guard, a workflow can
reach whatever the server can: cloud metadata (169.254.169.254), localhost admin ports, the
cluster network. Checking the URL's host string is not enough: names resolve to private
addresses, IPs have odd spellings (`2130706433`, `0x7f.1`), redirects move to other hosts, and
DNS can answer differently between a check and the connect (DNS rebinding).

Design: the check lives where connections are made. `create_client` returns an ordinary
`httpx2.AsyncClient` whose connection pool uses `_GuardedBackend`, an httpcore2 network
backend. For every new TCP connection (redirect targets included) it resolves the host once,
refuses with `BlockedAddressError` if any address is not public, and connects to the checked IP
itself, so no second lookup can happen. TLS still runs `start_tls` with the hostname (SNI and
certificate verification use the URL's host). The client ignores proxy and netrc settings from
the environment (`trust_env=False`); a proxy would make the connection on our behalf.

Calling pattern: `BlockedAddressError` is not an httpx2 error, so it passes through httpx2
unchanged; catch it (or `AgentFlowError`) next to `httpx2.HTTPError`. Bodies are read with a
cap::

    async with create_client() as client, client.stream("GET", url) as response:
        body = await read_limited(response, max_bytes=1_000_000)
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping

import httpcore2
import httpx2

from agentflow_grpc.model.errors import AgentFlowError

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Resolver = Callable[[str, int], Awaitable[list[str]]]

_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")


class BlockedAddressError(AgentFlowError):
    """A connection would go to a private, loopback, link-local or otherwise non-public IP."""

    code = "http.blocked_address"

    def __init__(self, host: str, address: IPAddress) -> None:
        super().__init__(
            f"refusing to connect to {host}: it resolves to {address}, which is not a public"
            " address (set the source option allow_private_network to allow private networks)"
        )
        self.host = host
        self.address = address


class ResponseTooLargeError(AgentFlowError):
    """A response body is larger than the configured cap."""

    code = "http.response_too_large"


def is_public_address(ip: IPAddress) -> bool:
    """True only for globally routable unicast addresses; embedded IPv4 is judged as IPv4."""
    if isinstance(ip, ipaddress.IPv6Address):
        embedded = ip.ipv4_mapped or ip.sixtofour
        if embedded is None and ip in _NAT64:
            embedded = ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
        if embedded is not None:
            return is_public_address(embedded)
        if ip.is_site_local:  # fec0::/10, deprecated but still `is_global` in the stdlib
            return False
    # `is_global` misses multicast (and, before 3.13, IPv4-compatible ::a.b.c.d as reserved).
    return ip.is_global and not (ip.is_multicast or ip.is_reserved or ip.is_unspecified)


async def _system_resolver(host: str, port: int) -> list[str]:
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


class _GuardedBackend(httpcore2.AsyncNetworkBackend):
    """Resolves, checks, then connects to the checked IP through the default anyio backend."""

    def __init__(self, *, allow_private_network: bool, resolver: Resolver) -> None:
        self._inner = httpcore2.AnyIOBackend()
        self._allow_private_network = allow_private_network
        self._resolver = resolver

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[httpcore2.SOCKET_OPTION] | None = None,
    ) -> httpcore2.AsyncNetworkStream:
        if self._allow_private_network:
            return await self._inner.connect_tcp(host, port, timeout, local_address, socket_options)
        deadline = None if timeout is None else time.monotonic() + timeout
        addresses = await self._resolve(host, port, timeout)
        for address in addresses:
            if not is_public_address(address):
                raise BlockedAddressError(host, address)
        error: Exception = httpcore2.ConnectError(f"{host} resolved to no address")
        for address in addresses:  # in resolver order, like a plain connect would
            left = None if deadline is None else max(deadline - time.monotonic(), 0.0)
            try:
                return await self._inner.connect_tcp(
                    str(address), port, left, local_address, socket_options
                )
            except (httpcore2.ConnectError, httpcore2.ConnectTimeout) as exc:
                error = exc
        raise error

    async def _resolve(self, host: str, port: int, timeout: float | None) -> list[IPAddress]:
        try:
            return [ipaddress.ip_address(host)]  # a literal IP: nothing to resolve
        except ValueError:
            pass
        try:
            async with asyncio.timeout(timeout):
                return [ipaddress.ip_address(a) for a in await self._resolver(host, port)]
        except TimeoutError as exc:
            raise httpcore2.ConnectTimeout(f"resolving {host} timed out") from exc
        except OSError as exc:  # socket.gaierror: unknown name, no network
            raise httpcore2.ConnectError(f"cannot resolve {host}: {exc}") from exc

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


class _GuardedTransport(httpx2.AsyncHTTPTransport):
    def __init__(self, backend: _GuardedBackend) -> None:
        ssl_context = httpx2.create_ssl_context()
        super().__init__(verify=ssl_context, trust_env=False)
        # httpx2 2.16 takes no network backend, so replace the pool it built with one that uses
        # ours (same settings as httpx2's defaults); the transport only wraps `_pool`.
        self._pool = httpcore2.AsyncConnectionPool(
            ssl_context=ssl_context,
            max_connections=100,
            max_keepalive_connections=20,
            keepalive_expiry=5.0,
            network_backend=backend,
        )


def create_client(
    *,
    allow_private_network: bool = False,
    base_url: str = "",
    headers: Mapping[str, str] | None = None,
    timeout: float | None = 30.0,
    follow_redirects: bool = True,
    max_redirects: int = 5,
    resolver: Resolver | None = None,
) -> httpx2.AsyncClient:
    """An `httpx2.AsyncClient` whose every connection is checked (see the module docstring).

    `resolver(host, port)` returns IP address strings; the default is `loop.getaddrinfo`.
    """
    backend = _GuardedBackend(
        allow_private_network=allow_private_network, resolver=resolver or _system_resolver
    )
    return httpx2.AsyncClient(
        transport=_GuardedTransport(backend),
        base_url=base_url,
        headers=headers,
        timeout=httpx2.Timeout(timeout),
        follow_redirects=follow_redirects,
        max_redirects=max_redirects,
        trust_env=False,
    )


async def read_limited(response: httpx2.Response, max_bytes: int) -> bytes:
    """Read a streamed body (decoded), failing as soon as it exceeds `max_bytes`."""

    def too_large() -> ResponseTooLargeError:
        return ResponseTooLargeError(
            f"the response from {response.url.host} is larger than {max_bytes} bytes"
        )

    declared = response.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > max_bytes:
        raise too_large()
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.aiter_bytes():
        size += len(chunk)
        if size > max_bytes:
            raise too_large()
        chunks.append(chunk)
    return b"".join(chunks)
