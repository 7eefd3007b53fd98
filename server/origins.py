"""Where a source URL may lead: the allowed origins, and the addresses never to reach. Pure.

`SourceOrigin` is one `IMGCDN_SOURCE_HOSTS` entry: a scheme, a host (or every subdomain of
one) and a port, all three matched, so an allowed `https://cdn.example.com` does not let
through `http://cdn.example.com` or `https://cdn.example.com:8443`. Entries:

- `https://cdn.example.com`, `http://img.example.org:8000`, `http://[2606:4700::1]:8080`: exactly
  that origin; a missing port is the scheme's (80, 443);
- `cdn.example.com`, `cdn.example.com:8443`: no scheme means https;
- `*.example.com`, `http://*.example.com:8080`: any host under example.com (at any depth),
  not example.com itself; a `*` only as the whole first label, over at least two labels.

Matching is on what the URL says, before DNS: an IP entry matches a URL naming that address
(in any spelling), not a name resolving to it. Before this, entries were host names only and
matched any scheme and port; a bare host still parses, now meaning https on 443.

`refusal` names the kind of a non-public address (loopback, private, metadata, ...), and
`ip_literal` reads an IP address in every form a resolver accepts (`2130706433`, `0x7f.1`),
so that no spelling of one slips past either check.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from urllib.parse import urlsplit

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

DEFAULT_PORTS = {"http": 80, "https": 443}
METADATA = frozenset(
    ipaddress.ip_address(a)
    for a in ("169.254.169.254", "169.254.170.2", "100.100.100.200", "fd00:ec2::254")
)
CGNAT = ipaddress.IPv4Network("100.64.0.0/10")
UNIQUE_LOCAL = ipaddress.IPv6Network("fc00::/7")
NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
IPV4_COMPATIBLE = ipaddress.IPv6Network("::/96")
IPV4_TRANSLATED = ipaddress.IPv6Network("::ffff:0:0:0/96")
HOST_NAME = re.compile(r"[a-z0-9_-]+(\.[a-z0-9_-]+)*\.?")
# WHATWG URL: a host whose last label is a number is an IPv4 address, in any legacy form.
NUMERIC_LABEL = re.compile(r"(0x[0-9a-f]*|[0-9]+)")


@dataclass(frozen=True, slots=True)
class SourceOrigin:
    """One allowed origin: scheme, host and port; `subdomains` for a `*.` entry."""

    scheme: str
    host: str  # lower case, no trailing dot; an IP address in its canonical text
    port: int
    subdomains: bool = False  # `*.example.com`: hosts under `host`, not `host` itself

    @classmethod
    def parse(cls, entry: str) -> SourceOrigin:
        """The origin `entry` names, or a ValueError quoting the entry and what is wrong."""
        text = entry.strip().lower()
        bad = f"{entry.strip()!r}"
        try:
            parts = urlsplit(text if "://" in text else f"https://{text}")
            port = parts.port
        except ValueError:
            raise ValueError(f"{bad} is not an origin like https://cdn.example.com") from None
        if parts.scheme not in DEFAULT_PORTS:
            raise ValueError(f"{bad} must be http or https")
        if parts.username is not None or parts.password is not None:
            raise ValueError(f"{bad} must not carry credentials")
        host = (parts.hostname or "").rstrip(".")
        if not host:
            raise ValueError(f"{bad} has no host")
        if parts.path not in ("", "/") or "?" in text or "#" in text:
            raise ValueError(f"{bad} must be an origin only, without a path or query")
        if port == 0:
            raise ValueError(f"{bad} port must be in 1..65535")
        subdomains = host.startswith("*.")
        host = host.removeprefix("*.")
        if not host or "*" in host:
            raise ValueError(f"{bad}: a * may only stand as the first label, as in *.example.com")
        try:
            address = ip_literal(host)
        except ValueError as exc:
            raise ValueError(f"{bad} host {exc}") from None
        if address is not None:
            if subdomains:
                raise ValueError(f"{bad}: *. goes before a domain name, not an IP address")
            host = str(address)
        elif not HOST_NAME.fullmatch(host):
            raise ValueError(f"{bad} host is not a host name (IDN: use its xn-- form)")
        elif subdomains and "." not in host:
            raise ValueError(f"{bad} would allow a whole top-level domain")
        return cls(parts.scheme, host, port or DEFAULT_PORTS[parts.scheme], subdomains)

    def matches(self, scheme: str, host: str, port: int) -> bool:
        """Whether the origin `scheme://host:port` (host as `canonical_host` gives it) is this."""
        if (scheme, port) != (self.scheme, self.port):
            return False
        if self.subdomains:
            return host.endswith(f".{self.host}")
        return host == self.host

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{'*.' if self.subdomains else ''}{host}:{self.port}"


def canonical_host(host: str, address: IPAddress | None) -> str:
    """`host` as `SourceOrigin.host` holds it: the address's text, or the name in lower case."""
    return str(address) if address is not None else host.lower().rstrip(".")


def refusal(address: IPAddress) -> str | None:
    """What kind of non-public address `address` is ("a loopback address"), or None."""
    if isinstance(address, ipaddress.IPv6Address):
        for embedded in _embedded_ipv4(address):
            kind = refusal(embedded)
            if kind is not None:
                return kind
    if address in METADATA:
        return "a cloud metadata address"
    v6 = isinstance(address, ipaddress.IPv6Address)
    site_local = isinstance(address, ipaddress.IPv6Address) and address.is_site_local
    kinds: tuple[tuple[str, bool], ...] = (
        ("an unspecified address", address.is_unspecified),
        ("a loopback address", address.is_loopback),
        ("a link-local address", address.is_link_local),
        ("a carrier-grade NAT address", not v6 and address in CGNAT),
        ("a multicast address", address.is_multicast),
        ("a site-local address", site_local),
        ("a unique-local address", v6 and address in UNIQUE_LOCAL),
        ("a reserved address", address.is_reserved),
        ("a private address", address.is_private),
        ("a non-public address", not address.is_global),
    )
    for kind, matches in kinds:
        if matches:
            return kind
    return None


def _embedded_ipv4(address: ipaddress.IPv6Address) -> list[ipaddress.IPv4Address]:
    """The IPv4 addresses a packet to `address` may end up at (mapped, 6to4, Teredo, NAT64)."""
    found = [v4 for v4 in (address.ipv4_mapped, address.sixtofour) if v4 is not None]
    if address.teredo is not None:
        found.extend(address.teredo)
    # :: and ::1 are themselves, not IPv4-compatible forms of 0.0.0.0 and 0.0.0.1.
    low32 = (NAT64, IPV4_COMPATIBLE, IPV4_TRANSLATED)
    if int(address) > 1 and any(address in net for net in low32):
        found.append(ipaddress.IPv4Address(int(address) & 0xFFFFFFFF))
    return found


def ip_literal(host: str) -> IPAddress | None:
    """`host` (lower case) as an IP address in any form a resolver accepts, None for a name.

    A ValueError ("is not a valid IPv4 address") when it is an address, but a malformed one.
    """
    if ":" in host:
        if "%" in host:  # zone ids only make sense for link-local addresses
            raise ValueError("must not carry an IPv6 zone id")
        try:
            return ipaddress.IPv6Address(host)
        except ValueError:
            raise ValueError("is not a valid IPv6 address") from None
    labels = host.split(".")
    if labels[-1] == "" and len(labels) > 1:
        labels.pop()
    if not NUMERIC_LABEL.fullmatch(labels[-1]):
        return None
    try:
        return ipaddress.IPv4Address(_legacy_ipv4(labels))
    except ValueError:
        raise ValueError("is not a valid IPv4 address") from None


def _legacy_ipv4(labels: list[str]) -> int:
    """The address inet_aton reads from `labels`: decimal, 0x hex or 0 octal; 1 to 4 parts."""
    if len(labels) > 4:
        raise ValueError("more than 4 parts")
    parts = []
    for label in labels:
        if not NUMERIC_LABEL.fullmatch(label):
            raise ValueError(f"not a number: {label!r}")
        if label.startswith("0x"):
            parts.append(int(label[2:] or "0", 16))
        elif len(label) > 1 and label.startswith("0"):
            parts.append(int(label, 8))
        else:
            parts.append(int(label))
    *head, last = parts
    if any(p > 255 for p in head) or last >= 256 ** (4 - len(head)):
        raise ValueError("part out of range")
    value = last
    for i, part in enumerate(head):
        value += part << (8 * (3 - i))
    return value
