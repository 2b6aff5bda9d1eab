"""The egress policy: every address a customer supplies is checked before, and at, every connection.

A customer gives addresses (an S3 or GCS `endpoint_url`, a service-account key's `token_uri`, an
Azure `BlobEndpoint`); the service then sends signed requests there. Without a policy a tenant could
point them at the platform's inside (loopback, the private network, the cloud's metadata address).
So, unless EXPORT_ALLOW_PRIVATE_ENDPOINTS is on (local, CI, tests, the demo):

- only `https`;
- the host is resolved once per connection and every address it resolves to must be public
  (`public_address` lists what is not);
- the connection is made to the address that was checked: the SDKs' urllib3 connections are
  replaced by pinned ones whose dial address is the checked IP, while the Host header, SNI and the
  certificate check keep the host name (no second lookup, so DNS rebinding cannot turn it inward);
- redirects are not followed.

A refusal before any connection (when a destination is verified, created or updated) is an
InputError naming the field; at connection time it is an `EgressRefused`, which the destination's
error map turns into the same words. The cloud's own endpoints always pass (`trusted_host`).

The resolver and the connector are injectable (`using`): tests map any name to any address, and
record a connection attempt instead of making it.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import re
import socket
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from .errors import InputError

if TYPE_CHECKING:  # imported where used: the HTTP stacks load only with a destination that needs them
    pass
from .settings import allow_private_endpoints

SETTING = "EXPORT_ALLOW_PRIVATE_ENDPOINTS"

# (host, port) -> the addresses it resolves to, as text
Resolver = Callable[[str, int], Sequence[str]]
# urllib3's socket options: (level, option, value)
SocketOptions = list[tuple[int, int, int | bytes]]
# ((address, port), timeout, source address, socket options) -> a connected socket
Connector = Callable[[tuple[str, int], float | None, tuple[str, int] | None, SocketOptions | None], socket.socket]

# The clouds' own endpoints: not customer servers, and they may resolve to private addresses on
# purpose (a private endpoint of Azure Storage in the service's network).
TRUSTED_HOSTS = (
    re.compile(r"[a-z0-9]{3,24}(?:-secondary)?\.blob\.core\.(?:windows\.net|chinacloudapi\.cn|usgovcloudapi\.net)"),
    re.compile(
        r"(?:[a-z0-9][a-z0-9.-]*\.)?s3(?:-fips|-external-1)?(?:\.dualstack)?"
        r"(?:[.-][a-z]{2}(?:-gov|-iso[a-z]*)?-[a-z]+-\d)?\.amazonaws\.com(?:\.cn)?"
    ),
    re.compile(r"(?:storage|oauth2|www)\.googleapis\.com|accounts\.google\.com"),
)

REASON_SCHEME = "must be an https address (plain http is not allowed for a customer's endpoint)"
REASON_ADDRESS = (
    "must name a host on the public internet: {host} is, or resolves to, an address that is not public "
    "(loopback, private, link-local, shared or reserved)"
)
REASON_UNRESOLVED = "names a host that does not resolve ({host})"
REASON_REDIRECT = "answered with a redirect, which is not followed: give the address that answers directly"

_V4 = ipaddress.IPv4Network
_V6 = ipaddress.IPv6Network
# Every range that is not the public internet, each named (ipaddress's own flags are a last check).
NOT_PUBLIC_V4: dict[str, tuple[_V4, ...]] = {
    "unspecified": (_V4("0.0.0.0/8"),),
    "loopback": (_V4("127.0.0.0/8"),),
    "private": (_V4("10.0.0.0/8"), _V4("172.16.0.0/12"), _V4("192.168.0.0/16")),
    "carrier-grade NAT": (_V4("100.64.0.0/10"),),
    "link-local": (_V4("169.254.0.0/16"),),
    "multicast": (_V4("224.0.0.0/4"),),
    "reserved": (
        _V4("240.0.0.0/4"),  # with the broadcast address
        _V4("192.0.0.0/24"),  # IETF protocol assignments
        _V4("192.0.2.0/24"),  # documentation
        _V4("198.51.100.0/24"),
        _V4("203.0.113.0/24"),
        _V4("198.18.0.0/15"),  # benchmarking
        _V4("192.88.99.0/24"),  # the old 6to4 relay
    ),
}
NOT_PUBLIC_V6: dict[str, tuple[_V6, ...]] = {
    "unspecified": (_V6("::/128"),),
    "loopback": (_V6("::1/128"),),
    "unique-local": (_V6("fc00::/7"),),
    "link-local": (_V6("fe80::/10"), _V6("fec0::/10")),  # with the old site-local range
    "multicast": (_V6("ff00::/8"),),
    "reserved": (
        _V6("100::/64"),  # discard
        _V6("2001:db8::/32"),  # documentation
        _V6("2001::/32"),  # Teredo: the IPv4 inside is obfuscated, so it cannot be checked
        _V6("64:ff9b:1::/48"),  # local-use NAT64
    ),
}
# IPv6 forms that carry an IPv4 address: it is checked as IPv4.
MAPPED = _V6("::ffff:0:0/96")
COMPATIBLE = _V6("::/96")
SIX_TO_FOUR = _V6("2002::/16")
NAT64 = _V6("64:ff9b::/96")


def not_public(address: str) -> str | None:
    """Why `address` is not on the public internet ("loopback", "private", ...), or None if it is."""
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])  # an IPv6 zone id names an interface: dropped
    except ValueError:
        return "not an address"
    if isinstance(ip, ipaddress.IPv6Address):
        embedded = _embedded_v4(ip)
        if embedded is not None:
            return not_public(str(embedded))
        ranges: Mapping[str, tuple[_V4 | _V6, ...]] = NOT_PUBLIC_V6
    else:
        ranges = NOT_PUBLIC_V4
    for category, networks in ranges.items():
        if any(ip in network for network in networks):
            return category
    return None if ip.is_global else "reserved"


def _embedded_v4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address inside an IPv4-mapped, IPv4-compatible, 6to4 or NAT64 address."""
    if ip in MAPPED:
        return ip.ipv4_mapped
    if ip in SIX_TO_FOUR:
        return ip.sixtofour
    if ip in NAT64 or (ip in COMPATIBLE and int(ip) > 1):  # ::/96 holds :: and ::1 too: those are not IPv4
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return None


def trusted_host(host: str) -> bool:
    """One of the clouds' own endpoints (Azure Storage, Amazon S3, Google Cloud Storage and its OAuth)."""
    return any(pattern.fullmatch(host.lower().rstrip(".")) for pattern in TRUSTED_HOSTS)


def trusted_url(url: str) -> bool:
    """An https URL on one of the clouds' own endpoints."""
    parts = urlsplit(url)
    return parts.scheme == "https" and trusted_host(parts.hostname or "")


def system_resolve(host: str, port: int) -> list[str]:
    """Every address the host resolves to (one DNS lookup)."""
    found = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(sockaddr[0]) for *_, sockaddr in found))


def system_connect(
    address: tuple[str, int],
    timeout: float | None,
    source_address: tuple[str, int] | None,
    options: SocketOptions | None,
) -> socket.socket:
    """A TCP connection to an address (an IP: no lookup happens here)."""
    from urllib3.util.connection import create_connection

    return create_connection(address, timeout, source_address=source_address, socket_options=options)


class EgressRefused(Exception):
    """A connection the policy refused. Not an OSError, so no SDK retries it or calls it a network fault."""

    def __init__(self, field: str, reason: str):
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason

    def as_input_error(self) -> InputError:
        return InputError(self.reason, field=self.field)


@dataclass(frozen=True)
class EgressPolicy:
    """What a customer's address may be, and how it is resolved and connected to."""

    allow_private: bool = False
    resolve: Resolver = system_resolve
    connect: Connector = system_connect

    def check_url(self, url: str, field: str) -> None:
        """Refuse `url` (an InputError naming `field`) unless the policy allows it; no packet is sent to it."""
        try:
            parts = urlsplit(url)
            host, port = parts.hostname or "", parts.port or 443
        except ValueError:
            raise InputError("is not a valid URL (check the host and the port)", field=field) from None
        if self.allow_private:
            return
        if parts.scheme != "https":
            raise InputError(REASON_SCHEME, field=field)
        if trusted_host(host):
            return
        try:
            self.addresses(host, port, field)
        except EgressRefused as refused:
            raise refused.as_input_error() from None

    def addresses(self, host: str, port: int, field: str) -> list[str]:
        """The host's addresses, resolved once; EgressRefused unless every one may be connected to."""
        host = host.strip("[]").rstrip(".")
        try:
            ipaddress.ip_address(host.split("%", 1)[0])
            found = [host]
        except ValueError:
            try:
                found = list(self.resolve(host, port))
            except OSError:
                raise EgressRefused(field, REASON_UNRESOLVED.format(host=host)) from None
        if not found:
            raise EgressRefused(field, REASON_UNRESOLVED.format(host=host))
        if not self.allow_private and not trusted_host(host) and any(not_public(a) for a in found):
            raise EgressRefused(field, REASON_ADDRESS.format(host=host))
        return found


@dataclass(frozen=True)
class Guard:
    """The policy for one destination's connections, and which field named each host and port."""

    policy: EgressPolicy
    default_field: str  # an address the customer did not name (an upload session's URL, say) answers to this field
    fields: Mapping[str, str] = field(default_factory=dict)  # "host:port" -> the field that named it

    def field_for(self, host: str | None, port: int | None) -> str:
        return self.fields.get(_netloc(host, port), self.default_field)

    def addresses(self, host: str, port: int) -> list[str]:
        return self.policy.addresses(host, port, self.field_for(host, port))

    def redirect(self, url: str) -> EgressRefused:
        return EgressRefused(self.field_for(*_host_port(url)), REASON_REDIRECT)


def _host_port(url: str) -> tuple[str | None, int]:
    parts = urlsplit(url)
    return parts.hostname, parts.port or (80 if parts.scheme == "http" else 443)


def _netloc(host: str | None, port: int | None) -> str:
    return f"{(host or '').lower().strip('[]').rstrip('.')}:{port}"


def guard(default_field: str, **urls: str | None) -> Guard:
    """The current policy for a destination whose addresses are `urls` (field -> URL, None for the cloud's default)."""
    fields: dict[str, str] = {}
    for name, url in urls.items():
        if url:
            fields.setdefault(_netloc(*_host_port(url)), name)
    return Guard(current(), default_field, fields)


# ------------------------------------------------------------------ the process's policy


_override: EgressPolicy | None = None
_override_lock = threading.Lock()


def current() -> EgressPolicy:
    """The policy in force: the one `using` set, else the system's, from EXPORT_ALLOW_PRIVATE_ENDPOINTS."""
    return _override or EgressPolicy(allow_private=allow_private_endpoints(os.environ))


@contextmanager
def using(policy: EgressPolicy) -> Iterator[EgressPolicy]:
    """Put `policy` in force for the duration (tests: an injected resolver and connector)."""
    global _override
    with _override_lock:
        before, _override = _override, policy
    try:
        yield policy
    finally:
        with _override_lock:
            _override = before


def warn_if_private_allowed(log: logging.Logger) -> bool:
    """Log a warning while customers' endpoints may be private or plain http (never so in Azure)."""
    allowed = current().allow_private
    if allowed:
        log.warning(
            "%s=true: customer endpoints may be loopback, private or plain http; for local use and tests only",
            SETTING,
        )
    return allowed
