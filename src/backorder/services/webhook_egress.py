"""Where webhooks may go: only to public addresses, vetted once and then connected to.

A storefront key can make the service send requests, so a webhook URL is a server-side
request forgery risk: `http://169.254.169.254/` (cloud metadata), `http://127.0.0.1:5432/`,
an internal host name, or a public name whose DNS answer is private (or changes to private
after the URL was accepted). So:

- at create and update, `vet_url` resolves the host and refuses (422) a URL any of whose
  addresses is not public;
- at every delivery, the connection goes through `VettedBackend`, which resolves the host
  itself, refuses if any answer is not public, and connects to the address it just vetted.
  There is no second lookup between the check and the connection (DNS rebinding), while the
  `Host` header and TLS SNI keep the URL's host name;
- the client trusts no environment (`HTTP_PROXY`, `.netrc`) and follows no redirect.

`BACKORDER_WEBHOOK_ALLOW_PRIVATE_NETWORKS=true` lifts the address rule (tests, private
deployments); the rest still holds.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import socket
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import urlsplit

import httpcore
import httpx

from backorder import __version__
from backorder.domain.errors import RetryLater, ValidationFailed

log = logging.getLogger("backorder.webhooks")

RESOLVE_TIMEOUT_S = 5.0
USER_AGENT = f"backorder-webhooks/{__version__}"
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class BlockedAddress(httpcore.ConnectError):
    """The host is, or resolves to, an address webhooks may not reach."""


class UnresolvedHost(httpcore.ConnectError):
    """The host name did not resolve."""


_NAT64 = ipaddress.ip_network("64:ff9b::/96")  # well-known prefix: IPv4 in the last 32 bits
_LOCAL_NAT64 = ipaddress.ip_network("64:ff9b:1::/48")


def is_public(ip: IPAddress) -> bool:
    """Globally routable unicast: not loopback, private, link-local, shared (CGNAT),
    reserved, documentation, multicast or unspecified. An IPv6 address that carries an IPv4
    one (mapped, 6to4, NAT64) is judged by that; Teredo and local NAT64 are refused."""
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.teredo is not None or ip in _LOCAL_NAT64:
            return False
        if ip in _NAT64:
            return is_public(ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF))
        embedded = ip.ipv4_mapped or ip.sixtofour
        if embedded is not None:
            return is_public(embedded)
    return ip.is_global and not ip.is_multicast


async def resolve(host: str, port: int) -> list[IPAddress]:
    """Every address `host` stands for (an IP literal stands for itself)."""
    try:
        return [ipaddress.ip_address(host.strip("[]"))]
    except ValueError:
        pass
    loop = asyncio.get_running_loop()
    try:
        infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, ValueError) as exc:  # gaierror; IDNA's UnicodeError; a NUL in the name
        raise UnresolvedHost(f"{host} does not resolve") from exc
    addresses: list[IPAddress] = []
    for _family, _type, _proto, _name, sockaddr in infos:
        ip = ipaddress.ip_address(str(sockaddr[0]).split("%", 1)[0])
        if ip not in addresses:
            addresses.append(ip)
    if not addresses:
        raise UnresolvedHost(f"{host} does not resolve")
    return addresses


def refused(addresses: Iterable[IPAddress]) -> list[IPAddress]:
    return [ip for ip in addresses if not is_public(ip)]


async def vet_url(url: str, *, allow_private: bool, field: str = "url") -> None:
    """Refuse (422 `validation_error` naming `field`) a URL that webhooks may not reach."""
    if allow_private:
        return

    def invalid(msg: str) -> ValidationFailed:
        return ValidationFailed(
            f"{field}: {msg}", [{"loc": ["body", field], "field": field, "msg": msg}]
        )

    # urllib parses lazily and raises ValueError for what it cannot read (a port past 65535,
    # an unclosed IPv6 bracket): whatever reaches here, a URL it cannot read is a refusal.
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        raise invalid("not a URL webhooks can be sent to") from None
    if not host:
        raise invalid("the URL names no host")
    try:
        async with asyncio.timeout(RESOLVE_TIMEOUT_S):
            addresses = await resolve(host, port)
    except UnresolvedHost:
        raise invalid(f"the host {host!r} does not resolve") from None
    except TimeoutError:
        raise RetryLater(f"resolving {host!r} took too long; try again") from None
    if refused(addresses):
        raise invalid(
            "the host is or resolves to a loopback, private, link-local or other non-public "
            "address; webhooks go to public addresses only"
        )


class VettedBackend(httpcore.AsyncNetworkBackend):
    """Resolves each connection's host, vets every answer, connects to a vetted address."""

    def __init__(self, *, allow_private: bool) -> None:
        self.allow_private = allow_private
        self._inner = httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109 (httpcore's interface)
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        addresses = await resolve(host, port)
        if not self.allow_private and refused(addresses):
            raise BlockedAddress("not a public address")
        error: Exception | None = None
        for ip in addresses:
            try:
                return await self._inner.connect_tcp(
                    str(ip),
                    port,
                    timeout=timeout,
                    local_address=local_address,
                    socket_options=socket_options,
                )
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                error = exc
        assert error is not None
        raise error

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,  # noqa: ASYNC109 (httpcore's interface)
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        raise BlockedAddress("unix sockets are not webhook destinations")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


class VettedTransport(httpx.AsyncHTTPTransport):
    """httpx's transport on a `VettedBackend` (httpx takes no backend, so its pool is
    rebuilt with one; a test delivering to 127.0.0.1 with private networks refused
    fails if this ever stops taking effect)."""

    def __init__(self, *, allow_private: bool, max_connections: int = 100) -> None:
        super().__init__(trust_env=False)
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=httpx.create_ssl_context(trust_env=False),
            max_connections=max_connections,
            max_keepalive_connections=20,
            keepalive_expiry=5.0,
            network_backend=VettedBackend(allow_private=allow_private),
        )


def client(
    *, allow_private: bool, timeout_s: float, transport: httpx.AsyncBaseTransport | None = None
) -> httpx.AsyncClient:
    """The one way the service makes outbound HTTP requests."""
    return httpx.AsyncClient(
        transport=transport or VettedTransport(allow_private=allow_private),
        timeout=timeout_s,
        follow_redirects=False,
        trust_env=False,
    )


def coarse_error(exc: BaseException) -> str:
    """What a delivery attempt's failure may say: never the raw exception text, which can
    tell a port scanner more than a receiver's owner needs (refused vs. filtered ports,
    TLS details, internal host names)."""
    causes = (exc, exc.__cause__)  # httpx raises its own error from httpcore's
    if any(isinstance(e, BlockedAddress) for e in causes):
        return "refused: not a public address"
    if any(isinstance(e, UnresolvedHost) for e in causes):
        return "host does not resolve"
    if isinstance(exc, TimeoutError | httpx.TimeoutException):
        return "timeout"
    return "connection failed"


@dataclass(frozen=True, slots=True)
class Outcome:
    status_code: int | None
    error: str | None

    @property
    def ok(self) -> bool:
        return self.error is None


async def post(
    client: httpx.AsyncClient,
    url: str,
    body: bytes,
    *,
    webhook_id: str,
    signature: str,
    timeout_s: float,
) -> Outcome:
    """One signed POST; its outcome in coarse words only."""
    headers = {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        "Webhook-Id": webhook_id,
        "Webhook-Signature": signature,
    }
    try:
        async with asyncio.timeout(timeout_s):
            # Streamed and never read: the answer's status is all that counts, and a
            # receiver cannot make the worker buffer a large body.
            async with client.stream("POST", url, content=body, headers=headers) as r:
                status = r.status_code
    except (TimeoutError, httpx.HTTPError) as exc:
        return Outcome(None, coarse_error(exc))
    except Exception as exc:
        # Not only httpx's own errors escape a request: a stored URL httpx cannot read
        # (InvalidURL), a host name IDNA refuses (UnicodeError), a transport's bug. Each is a
        # failed attempt, recorded and retried like any other, never a lost outcome.
        log.warning("a webhook attempt raised %s", type(exc).__name__, exc_info=True)
        return Outcome(None, coarse_error(exc))
    if 200 <= status < 300:
        return Outcome(status, None)
    return Outcome(status, f"HTTP {status}")
