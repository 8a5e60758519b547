"""Where the service may send requests: one policy for callbacks (and, later, https imports and
webhooks).

A URL passes `OutboundPolicy.check_url` when it
- holds no control, format or whitespace character anywhere (`urlsplit` silently drops a tab
  or a newline, so the text stored would not be the URL sent);
- parses with httpx, the client that sends it, as an absolute http(s) URL with a host, no
  credentials and a valid port: every check below reads httpx's parse, never another parser's;
- names a host on the caller's allow-list, when it has one.

A host passes `OutboundPolicy.resolve` when every address it resolves to is public
(`ipaddress`'s `is_global`, not multicast), or loopback with `outbound_allow_loopback`, or inside
one of `outbound_allowed_networks`. Private, loopback, link-local (cloud metadata lives there),
shared, reserved and unspecified addresses are refused otherwise, IPv4-mapped IPv6 included.

`PinnedTransport` resolves and checks once per request and connects to the checked address, the
name kept for the Host header and TLS (SNI and certificate check), so a name that resolves to a
public address for the check and an internal one for the connection (DNS rebinding) reaches
nothing. Clients built by `client()` never use environment proxies, which would connect on
their own terms.
"""

from __future__ import annotations

import ipaddress
import socket
import unicodedata
from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import Any

import httpx

from service.config import Settings
from service.errors import OutboundRefused, OutboundUnreachable

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Resolver = Callable[[str, int], list[str]]

_REFUSED_CATEGORIES = frozenset({"Cc", "Cf", "Zs", "Zl", "Zp"})
_CONTROL_NAMES = {"\t": "a tab", "\r": "a carriage return", "\n": "a line feed", " ": "a space"}
DEFAULT_PORTS = {"http": 80, "https": 443}


def system_resolver(host: str, port: int) -> list[str]:
    """Every address the system resolver gives for host (TCP), in its order."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


def _address(text: str) -> Address:
    """An address as connections see it: no IPv6 zone, an IPv4-mapped IPv6 one as IPv4."""
    ip = ipaddress.ip_address(text.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


def _describe(address: Address) -> str:
    if address.is_loopback:
        return "a loopback address"
    if address.is_link_local:
        return "a link-local address"
    if address.is_private:
        return "a private address"
    if address.is_multicast:
        return "a multicast address"
    return "a reserved or non-public address"


@dataclass(frozen=True)
class OutboundPolicy:
    """What outbound requests may reach; build it from the settings with `from_settings`."""

    allow_loopback: bool = False
    allowed_networks: tuple[Network, ...] = ()
    resolver: Resolver = system_resolver

    @classmethod
    def from_settings(
        cls, settings: Settings, *, resolver: Resolver = system_resolver
    ) -> OutboundPolicy:
        return cls(
            allow_loopback=bool(settings.outbound_allow_loopback),
            allowed_networks=tuple(
                ipaddress.ip_network(net, strict=False)
                for net in settings.outbound_allowed_networks
            ),
            resolver=resolver,
        )

    def check_url(self, url: str, *, allowed_hosts: Collection[str] | None = None) -> httpx.URL:
        """The URL as httpx will send it, if it is well formed and names an allowed host."""
        for index, char in enumerate(url):
            if unicodedata.category(char) in _REFUSED_CATEGORIES:
                name = _CONTROL_NAMES.get(char) or unicodedata.name(char, "a control character")
                raise OutboundRefused(
                    f"it holds {name} (U+{ord(char):04X}) at position {index + 1}; remove it "
                    "(percent-encode it if it belongs in the path)"
                )
        try:
            parsed = httpx.URL(url)
            port = parsed.port
        except (httpx.InvalidURL, ValueError) as exc:
            raise OutboundRefused(f"not a valid URL ({exc})") from None
        if parsed.scheme not in DEFAULT_PORTS or not parsed.host:
            raise OutboundRefused("it must be an absolute http:// or https:// URL")
        if parsed.userinfo:
            raise OutboundRefused("it must not carry credentials (user:password@)")
        if port is not None and not 1 <= port <= 65535:
            raise OutboundRefused(f"not a valid URL (port {port} is not between 1 and 65535)")
        if allowed_hosts is not None:
            allowed = {host.lower().rstrip(".") for host in allowed_hosts}
            host = parsed.host.lower().rstrip(".")
            if host not in allowed:
                raise OutboundRefused(f"the host {host!r} is not among the allowed hosts")
        return parsed

    def permits(self, address: str) -> bool:
        """Whether one resolved address may be connected to."""
        ip = _address(address)
        if any(ip in network for network in self.allowed_networks):
            return True
        if ip.is_loopback:
            return self.allow_loopback
        return ip.is_global and not ip.is_multicast

    def resolve(self, host: str, port: int) -> str:
        """The address to connect to for host, once every address it resolves to is allowed."""
        try:
            addresses = self.resolver(host.strip("[]"), port)
        except (OSError, UnicodeError) as exc:
            raise OutboundUnreachable(f"the host {host!r} does not resolve: {exc}") from None
        if not addresses:
            raise OutboundUnreachable(f"the host {host!r} resolves to no address")
        for address in addresses:
            if not self.permits(address):
                what = _describe(_address(address))
                raise OutboundRefused(
                    f"the host {host!r} resolves to {address}, {what}; requests may only go to "
                    "public addresses (RIDGELINE_OUTBOUND_ALLOWED_NETWORKS and "
                    "RIDGELINE_OUTBOUND_ALLOW_LOOPBACK list exceptions)"
                )
        return addresses[0]

    def client(self, **options: Any) -> httpx.Client:
        """An httpx client whose every connection goes through this policy."""
        return httpx.Client(transport=PinnedTransport(self), trust_env=False, **options)


class PinnedTransport(httpx.BaseTransport):
    """Connects to the address the policy checked, whatever the name resolves to later."""

    def __init__(self, policy: OutboundPolicy, **options: Any) -> None:
        self.policy = policy
        self._transport = httpx.HTTPTransport(trust_env=False, **options)

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        url = request.url
        port = url.port or DEFAULT_PORTS.get(url.scheme, 80)
        address = self.policy.resolve(url.host, port)
        request.url = url.copy_with(host=address)
        request.extensions = {**request.extensions, "sni_hostname": url.host}
        return self._transport.handle_request(request)  # Host still carries the name

    def close(self) -> None:
        self._transport.close()
