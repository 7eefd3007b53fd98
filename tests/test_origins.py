"""server/origins.py: IMGCDN_SOURCE_HOSTS entries parsed into origins, and how they match."""

from __future__ import annotations

import re

import pytest

from server.origins import SourceOrigin


@pytest.mark.parametrize(
    ("entry", "canonical"),
    [
        ("https://cdn.example.com", "https://cdn.example.com:443"),
        ("https://cdn.example.com/", "https://cdn.example.com:443"),
        ("cdn.example.com", "https://cdn.example.com:443"),
        (" CDN.Example.COM. ", "https://cdn.example.com:443"),
        ("cdn.example.com:8443", "https://cdn.example.com:8443"),
        ("http://cdn.example.com", "http://cdn.example.com:80"),
        ("http://cdn.example.com:80", "http://cdn.example.com:80"),
        ("http://127.0.0.1:8000", "http://127.0.0.1:8000"),
        ("http://2130706433:8000", "http://127.0.0.1:8000"),
        ("http://[2001:DB8:0::1]:8080", "http://[2001:db8::1]:8080"),
        ("*.example.com", "https://*.example.com:443"),
        ("https://*.example.com:8443", "https://*.example.com:8443"),
        ("http://*.img.example.com", "http://*.img.example.com:80"),
        ("xn--bcher-kva.example", "https://xn--bcher-kva.example:443"),
    ],
)
def test_an_entry_is_one_scheme_host_and_port(entry: str, canonical: str) -> None:
    assert str(SourceOrigin.parse(entry)) == canonical


@pytest.mark.parametrize(
    ("entry", "problem"),
    [
        ("ftp://cdn.example.com", "must be http or https"),
        ("https://cdn.example.com/images", "without a path"),
        ("https://cdn.example.com?x=1", "without a path"),
        ("https://cdn.example.com#top", "without a path"),
        ("https://user:pw@cdn.example.com", "credentials"),
        ("https://cdn.example.com:0", "port must be in 1..65535"),
        ("https://cdn.example.com:65536", "is not an origin"),
        ("https://cdn.example.com:https", "is not an origin"),
        ("http://[::1", "is not an origin"),
        ("https://", "has no host"),
        ("//cdn.example.com", "has no host"),
        ("*", "a * may only stand as the first label"),
        ("*example.com", "a * may only stand as the first label"),
        ("img.*.example.com", "a * may only stand as the first label"),
        ("*.*.example.com", "a * may only stand as the first label"),
        ("*.com", "a whole top-level domain"),
        ("*.10.0.0.1", "not an IP address"),
        ("bücher.example", "xn--"),
        ("exa mple.com", "not a host name"),
        ("256.0.0.1", "not a valid IPv4 address"),
        ("http://[fe80::1%25eth0]", "zone id"),
    ],
)
def test_a_bad_entry_is_refused_quoting_it(entry: str, problem: str) -> None:
    with pytest.raises(ValueError, match=re.escape(problem)) as info:
        SourceOrigin.parse(entry)
    assert str(info.value).startswith(repr(entry))


WILDCARD = SourceOrigin.parse("*.example.com")


@pytest.mark.parametrize(
    ("scheme", "host", "port", "matches"),
    [
        ("https", "img.example.com", 443, True),
        ("https", "a.b.example.com", 443, True),  # any depth
        ("https", "example.com", 443, False),  # the domain itself is an entry of its own
        ("https", "badexample.com", 443, False),
        ("https", "img.example.com.evil.org", 443, False),
        ("http", "img.example.com", 80, False),  # a bare wildcard is https only
        ("http", "img.example.com", 443, False),
        ("https", "img.example.com", 8443, False),
    ],
)
def test_a_wildcard_is_every_subdomain_on_its_scheme_and_port(
    scheme: str, host: str, port: int, matches: bool
) -> None:
    assert WILDCARD.matches(scheme, host, port) is matches


def test_an_exact_entry_matches_its_origin_only() -> None:
    entry = SourceOrigin.parse("http://127.0.0.1:8000")
    assert entry.matches("http", "127.0.0.1", 8000)
    assert not entry.matches("http", "127.0.0.1", 8001)
    assert not entry.matches("https", "127.0.0.1", 8000)
    assert not entry.matches("http", "sub.127.0.0.1", 8000)
