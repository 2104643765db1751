"""Fetch an image by URL without letting the URL reach what it should not (SSRF).

Every hop (the URL and each redirect, at most `max_redirects`):
- http or https only, no user:password in the URL, a port only when explicitly allowed;
- the host must pass the deny list, and the allow list when one is set;
- the host is resolved once, and *every* address must be public: private, loopback, link-local,
  multicast, reserved, unspecified, shared (CGNAT), documentation and IPv4-mapped/translated
  IPv6 forms of those are refused (hosts on the allow list are the operator's choice and skip this);
- the connection goes to the address that was checked (no second lookup, so no DNS rebinding):
  the URL's host is kept in the Host header and, for https, as the TLS server name, so the
  certificate is still verified against the name.
The body is streamed with a byte cap and the whole fetch runs under one time cap. Nothing here
knows about the API; errors are domain errors with stable problem types.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import ssl
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from urllib.parse import urljoin, urlsplit

import httpx

from deepfake_api.errors import (
    UrlForbidden,
    UrlInvalid,
    UrlNotAnImage,
    UrlTimeout,
    UrlTooLarge,
    UrlUnreachable,
)
from deepfake_api.preprocess import sniff_format

Resolver = Callable[[str, int], Awaitable[list[str]]]

_SHARED = ipaddress.ip_network("100.64.0.0/10")
_NAT64 = ipaddress.ip_network("64:ff9b::/96")


async def system_resolve(host: str, port: int) -> list[str]:
    """Every address the system resolver gives for host (A and AAAA)."""
    loop = asyncio.get_running_loop()
    infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


def forbidden_address(address: str) -> str | None:
    """Why this address may not be fetched, or None when it is a public unicast address."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address):
        mapped = ip.ipv4_mapped or (ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF) if ip in _NAT64 else None)
        if mapped is not None:
            reason = forbidden_address(str(mapped))
            return f"{reason} (as IPv6 {ip})" if reason else None
        if ip.sixtofour is not None or ip.teredo is not None:
            return "a tunnelled IPv6 address"
    checks = (
        (ip.is_loopback, "a loopback address"),
        (ip.is_link_local, "a link-local address"),
        (ip.is_multicast, "a multicast address"),
        (ip.is_unspecified, "the unspecified address"),
        (isinstance(ip, ipaddress.IPv4Address) and ip in _SHARED, "a shared (carrier-grade NAT) address"),
        (ip.is_reserved, "a reserved address"),
        (ip.is_private, "a private address"),
        (not ip.is_global, "not a public address"),
    )
    for hit, reason in checks:
        if hit:
            return reason
    return None


def _host_matches(host: str, patterns: Sequence[str]) -> bool:
    """`example.com` matches itself; `.example.com` matches its subdomains (and itself)."""
    host = host.lower().rstrip(".")
    for p in patterns:
        p = p.lower().rstrip(".")
        if host == p.lstrip(".") or (p.startswith(".") and host.endswith(p)):
            return True
    return False


@dataclass
class FetchPolicy:
    max_bytes: int
    timeout_s: float = 10.0
    max_redirects: int = 3
    allow_hosts: list[str] = field(default_factory=list)
    """When set, only these hosts; they may resolve to private addresses (the operator's choice)."""
    deny_hosts: list[str] = field(default_factory=list)
    allow_ports: list[int] = field(default_factory=lambda: [80, 443])
    any_port: bool = False
    """Any port (webhook receivers listen where they like); the address checks still apply."""
    allow_private: bool = False
    """Skip the address checks (an operator's lab or internal receivers)."""
    user_agent: str = "deepfake-api-fetch/1"


@dataclass
class Fetched:
    url: str
    data: bytes
    content_type: str
    redirects: int


class SafeFetcher:
    def __init__(
        self, policy: FetchPolicy, resolve: Resolver = system_resolve, *, verify: bool | ssl.SSLContext = True
    ) -> None:
        self.policy = policy
        self.resolve = resolve
        self._client = httpx.AsyncClient(
            follow_redirects=False,
            trust_env=False,  # no proxy from the environment: we connect to the checked address
            verify=verify,
            timeout=httpx.Timeout(policy.timeout_s),
            limits=httpx.Limits(max_connections=32, max_keepalive_connections=0),
        )

    async def aclose(self) -> None:
        await self._client.aclose()

    async def fetch(self, url: str) -> Fetched:
        try:
            async with asyncio.timeout(self.policy.timeout_s):
                return await self._follow(url)
        except TimeoutError:
            raise UrlTimeout(f"The image at {url!r} did not arrive within {self.policy.timeout_s:g} s.") from None

    async def _follow(self, url: str) -> Fetched:
        current = url
        for hop in range(self.policy.max_redirects + 1):
            target, host, address = await self.check(current)
            response = await self._get(target, host, address)
            try:
                if response.status_code in (301, 302, 303, 307, 308) and "location" in response.headers:
                    current = urljoin(current, response.headers["location"])
                    continue
                if response.status_code != 200:
                    raise UrlUnreachable(f"{url!r} answered HTTP {response.status_code}.")
                data = await self._read(response, url)
                return Fetched(current, data, response.headers.get("content-type", ""), hop)
            finally:
                await response.aclose()
        raise UrlUnreachable(f"{url!r} redirects more than {self.policy.max_redirects} times.")

    async def check(self, url: str) -> tuple[httpx.URL, str, str]:
        """The URL's checks (scheme, host lists, every resolved address, port): the URL pointed at
        the checked address, its host name, that address; UrlInvalid/UrlForbidden/UrlUnreachable."""
        try:
            parts = urlsplit(url)
            port = parts.port
        except ValueError:
            raise UrlInvalid(f"{url!r} is not a valid URL.") from None
        if parts.scheme not in ("http", "https"):
            raise UrlInvalid(f"Only http and https URLs are fetched, not {parts.scheme or 'none'!r}.")
        if parts.username or parts.password:
            raise UrlInvalid("URLs with a user name or password are not fetched.")
        host = (parts.hostname or "").rstrip(".")
        if not host:
            raise UrlInvalid(f"{url!r} has no host.")
        port = port or (443 if parts.scheme == "https" else 80)
        allowed_host = bool(self.policy.allow_hosts) and _host_matches(host, self.policy.allow_hosts)
        if _host_matches(host, self.policy.deny_hosts):
            raise UrlForbidden(f"The host {host!r} is on this service's deny list.")
        if self.policy.allow_hosts and not allowed_host:
            raise UrlForbidden(f"The host {host!r} is not on this service's allow list.")
        try:
            addresses = [host] if _is_ip(host) else await self.resolve(host, port)
        except (OSError, UnicodeError):
            raise UrlUnreachable(f"The host {host!r} could not be resolved.") from None
        if not addresses:
            raise UrlUnreachable(f"The host {host!r} has no address.")
        if not allowed_host and not self.policy.allow_private:
            for address in addresses:
                if reason := forbidden_address(address):
                    raise UrlForbidden(f"The host {host!r} resolves to {address}, {reason}: not fetched.")
        if port not in self.policy.allow_ports and not allowed_host and not self.policy.any_port:
            raise UrlForbidden(f"Port {port} is not fetched (allowed: {', '.join(map(str, self.policy.allow_ports))}).")
        address = addresses[0]
        target = httpx.URL(url).copy_with(host=address, port=port)
        return target, host, address

    async def post(self, url: str, body: bytes, headers: dict[str, str], max_answer: int = 65536) -> int:
        """POST `body` to the checked address of `url` and return the status. Redirects are not
        followed (a 3xx is the answer); at most `max_answer` bytes of the answer are read."""
        try:
            async with asyncio.timeout(self.policy.timeout_s):
                target, host, _ = await self.check(url)
                response = await self._send("POST", target, host, {"Accept": "*/*", **headers}, body)
                try:
                    read = 0
                    async for chunk in response.aiter_raw():
                        read += len(chunk)
                        if read >= max_answer:
                            break
                    return response.status_code
                finally:
                    await response.aclose()
        except TimeoutError:
            raise UrlTimeout(f"{url!r} did not answer within {self.policy.timeout_s:g} s.") from None
        except httpx.TimeoutException:
            raise UrlTimeout(f"{url!r} did not answer within {self.policy.timeout_s:g} s.") from None
        except httpx.HTTPError as exc:
            raise UrlUnreachable(f"{url!r} could not be reached ({type(exc).__name__}).") from None

    async def _get(self, target: httpx.URL, host: str, address: str) -> httpx.Response:
        # The raw bytes are capped; no decompression bomb.
        return await self._send("GET", target, host, {"Accept": "image/*", "Accept-Encoding": "identity"})

    async def _send(
        self, method: str, target: httpx.URL, host: str, extra: dict[str, str], body: bytes | None = None
    ) -> httpx.Response:
        port = target.port
        default = 443 if target.scheme == "https" else 80
        headers = {"Host": host if port in (None, default) else f"{host}:{port}", "User-Agent": self.policy.user_agent}
        headers.update(extra)
        request = self._client.build_request(method, target, headers=headers, content=body)
        if target.scheme == "https":
            request.extensions["sni_hostname"] = host
        try:
            return await self._client.send(request, stream=True)
        except httpx.TimeoutException:
            raise UrlTimeout(f"{host} did not answer within {self.policy.timeout_s:g} s.") from None
        except httpx.HTTPError as exc:
            raise UrlUnreachable(f"{host} could not be reached ({type(exc).__name__}).") from None

    async def _read(self, response: httpx.Response, url: str) -> bytes:
        declared = response.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > self.policy.max_bytes:
            raise UrlTooLarge(f"{url!r} is {int(declared)} bytes; the limit is {self.policy.max_bytes}.")
        body = bytearray()
        try:
            async for chunk in response.aiter_raw():
                body += chunk
                if len(body) > self.policy.max_bytes:
                    raise UrlTooLarge(f"{url!r} is larger than the limit of {self.policy.max_bytes} bytes.")
        except httpx.TimeoutException:
            raise UrlTimeout(f"The image at {url!r} did not arrive within {self.policy.timeout_s:g} s.") from None
        except httpx.HTTPError as exc:
            raise UrlUnreachable(f"Reading {url!r} failed ({type(exc).__name__}).") from None
        if sniff_format(bytes(body[:16])) is None:
            raise UrlNotAnImage(f"{url!r} is not a JPEG, PNG, WebP, BMP, GIF or TIFF image.")
        return bytes(body)


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True
