"""SSRF-safe fetching of source URLs (POST /v1/assets {"url"}).

Only http(s); one deadline over the whole fetch; a byte cap checked against Content-Length
and while streaming; at most 3 redirects; the origin checked against the allow-list and
every address checked where the connection is made (after DNS resolution, and again on every
redirect), so no redirect or DNS trick reaches an origin or address it may not.

Two address checks, because aiohttp's connector has two paths to an address:
- a host that is an IP literal (any form a resolver would accept: `127.0.0.1`, `2130706433`,
  `0x7f000001`, `0177.0.0.1`, `127.1`, `[::ffff:127.0.0.1]`, ...) is parsed and checked by
  `check_url` before any session exists; aiohttp would not ask a resolver about it;
- a host name goes through `PublicResolver`, which drops every non-public address from the
  answer the connector then connects to, so there is no window between check and connect.
What counts as non-public is `origins.refusal`. `allowed_hosts` (scheme, host and port, see
`origins.SourceOrigin`) narrows the origins further; it never lets a non-public address
through. Only `allow_private` (tests) skips the address check.

The deadline (`timeout_s`) covers connecting, every request, every redirect and the body:
a source that drips a byte a second is cut off at it, not at a per-read timeout it never
trips. There is no separate idle timeout: the one deadline already bounds a stalled source,
and a shorter idle one would refuse a slow-to-start source the deadline would have allowed.

Failures, all with `param="url"`:
- 400 `invalid_url`: not http(s), no host, credentials in the URL, too long, bad host;
- 403 `source_forbidden`: origin not in the allow-list, or a non-public address;
- 413 `source_too_large`: Content-Length or the streamed body over `max_bytes`;
- 422 `source_fetch_failed`: the origin answered 3xx without a usable redirect or a 4xx,
  more than `max_redirects` redirects, or the host does not resolve: a retry of the same
  request cannot help. Messages name the kind of address, never a resolved one;
- 503 `source_unavailable` (Retry-After): the connection was refused or broke, or the origin
  answered 5xx or 429: the origin is down or busy, and the same request may work later;
- 504 `source_timeout`: the deadline passed (a slow or stalled source: worth a retry).
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Mapping
from dataclasses import dataclass

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import DefaultResolver
from yarl import URL

from server.errors import (
    InvalidUrl,
    SourceFetchFailed,
    SourceForbidden,
    SourceTimeout,
    SourceUnavailable,
    TooLarge,
)
from server.origins import HOST_NAME, SourceOrigin, canonical_host, ip_literal, refusal

MAX_URL_LENGTH = 2048
REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
HEADERS = {"User-Agent": "imgcdn", "Accept": "image/*, */*;q=0.5", "Accept-Encoding": "identity"}
CHUNK = 64 * 1024


@dataclass(frozen=True, slots=True)
class FetchPolicy:
    max_bytes: int
    timeout_s: float = 8.0
    max_redirects: int = 3
    allowed_hosts: tuple[SourceOrigin, ...] = ()  # empty: any public origin
    allow_private: bool = False  # tests only: lets loopback/private addresses through


@dataclass(slots=True)
class _Progress:
    """How far the fetch got, for the message when the deadline cuts it off."""

    answered: bool = False  # the current request's status line and headers came
    received: int = 0  # body bytes so far

    def late(self, timeout_s: float) -> str:
        if not self.answered:
            return f"source did not answer within {timeout_s:g} s"
        return f"source did not send its body within {timeout_s:g} s ({self.received} bytes came)"


async def fetch(url: str, policy: FetchPolicy) -> tuple[bytes, str | None]:
    """The body at `url` and its Content-Type, or an ImgcdnError naming why not."""
    target = check_url(url, policy)
    resolver = PublicResolver(policy.allow_private)
    progress = _Progress()
    try:
        async with asyncio.timeout(policy.timeout_s), _session(resolver) as session:
            return await _follow(session, target, policy, progress)
    except TimeoutError as exc:
        raise SourceTimeout(progress.late(policy.timeout_s)) from exc
    except aiohttp.ClientConnectorError as exc:
        if resolver.refused is not None:
            raise SourceForbidden(f"{exc.host} resolves to {resolver.refused}") from exc
        if isinstance(exc.os_error, socket.gaierror):
            raise SourceFetchFailed(f"{exc.host} does not resolve") from exc
        raise SourceUnavailable(f"could not connect to {exc.host}:{exc.port}") from exc
    except aiohttp.InvalidURL as exc:
        raise InvalidUrl("url is not a valid http(s) URL") from exc
    except aiohttp.ClientPayloadError as exc:
        raise SourceFetchFailed("source body was cut short or malformed") from exc
    except aiohttp.ClientError as exc:
        raise SourceUnavailable("connection to source failed") from exc
    finally:
        await resolver.close()


def check_url(url: str, policy: FetchPolicy, *, where: str = "url") -> URL:
    """`url` parsed, if its scheme, origin and (literal) address pass `policy`.

    Host names are checked again after resolution, by the resolver `fetch` connects through.
    """
    if len(url) > MAX_URL_LENGTH:
        raise InvalidUrl(f"{where} is longer than {MAX_URL_LENGTH} characters")
    try:
        parsed = URL(url)
    except ValueError as exc:
        raise InvalidUrl(f"{where} is not a valid URL") from exc
    return _check_parsed(parsed, policy, where)


def _check_parsed(url: URL, policy: FetchPolicy, where: str) -> URL:
    if url.scheme not in ("http", "https"):
        raise InvalidUrl(f"{where} must be http or https, got {url.scheme or 'no'} scheme")
    if url.raw_user is not None or url.raw_password is not None:
        raise InvalidUrl(f"{where} must not carry credentials")
    host = (url.raw_host or "").lower()
    if not host:
        raise InvalidUrl(f"{where} has no host")
    try:
        address = ip_literal(host)
    except ValueError as exc:
        raise InvalidUrl(f"{where} host {exc}") from None
    if address is None and not HOST_NAME.fullmatch(host):
        raise InvalidUrl(f"{where} host is not a valid host name or IP address")
    if policy.allowed_hosts:
        _check_origin(url, canonical_host(host, address), policy.allowed_hosts, where)
    if address is not None and not policy.allow_private:
        kind = refusal(address)
        if kind is not None:
            raise SourceForbidden(f"{where} host is {kind}")
    return url.with_fragment(None)


def _check_origin(url: URL, host: str, allowed: tuple[SourceOrigin, ...], where: str) -> None:
    port = url.port  # yarl gives the scheme's default when the URL names none
    if port is None or not any(o.matches(url.scheme, host, port) for o in allowed):
        shown = f"[{host}]" if ":" in host else host
        raise SourceForbidden(
            f"{where} origin {url.scheme}://{shown}:{port} is not an allowed source origin"
        )


class PublicResolver(AbstractResolver):
    """The default resolver, minus every address `refusal` names (unless allow_private)."""

    def __init__(self, allow_private: bool) -> None:
        self._allow_private = allow_private
        self._inner: AbstractResolver | None = None
        self.refused: str | None = None  # why the last answer was refused whole, for the error

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        if self._inner is None:
            self._inner = DefaultResolver()
        results = await self._inner.resolve(host, port, family)
        self.refused = None
        if self._allow_private:
            return results
        public, refused = [], None
        for result in results:
            try:
                kind = refusal(ipaddress.ip_address(result["host"]))
            except ValueError:
                kind = "an unparseable address"
            if kind is None:
                public.append(result)
            else:
                refused = kind
        if not public:
            # An OSError is what the connector expects from a resolver; fetch() reads
            # `refused` to tell this apart from a name that does not resolve.
            self.refused = refused
            raise OSError(f"{host} resolves to {refused or 'no address'}")
        return public

    async def close(self) -> None:
        if self._inner is not None:
            await self._inner.close()


def _session(resolver: AbstractResolver) -> aiohttp.ClientSession:
    """The one place a fetch's connection can come from (tests replace it to prove none is
    made)."""
    return open_session(resolver, HEADERS)


def open_session(resolver: AbstractResolver, headers: Mapping[str, str]) -> aiohttp.ClientSession:
    """A session that connects only to what `resolver` answers (a PublicResolver: the SSRF
    guard), with no timeouts of its own: the caller's one deadline bounds it (webhooks.py
    posts through it too)."""
    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(resolver=resolver, use_dns_cache=False, force_close=True),
        # No timeouts of aiohttp's own (its default is 300 s a request): the caller's one
        # deadline covers every request, redirect and body, and is the one that answers.
        timeout=aiohttp.ClientTimeout(),
        headers=headers,
        cookie_jar=aiohttp.DummyCookieJar(),
        trust_env=False,  # no proxies from the environment: they would connect for us
        auto_decompress=False,  # the byte cap counts the bytes that came over the wire
    )


async def _follow(
    session: aiohttp.ClientSession, url: URL, policy: FetchPolicy, progress: _Progress
) -> tuple[bytes, str | None]:
    for _ in range(policy.max_redirects + 1):
        progress.answered = False
        async with session.get(url, allow_redirects=False) as response:
            progress.answered = True
            if response.status in REDIRECT_STATUSES:
                location = response.headers.get("Location")
                if not location:
                    raise SourceFetchFailed(f"source answered {response.status} without Location")
                try:
                    next_url = url.join(URL(location))
                except ValueError as exc:
                    raise InvalidUrl("source redirects to an invalid URL") from exc
                url = _check_parsed(next_url, policy, "redirect target")
                continue
            if response.status >= 500 or response.status == 429:
                # The origin is down or busy: the same request may work later.
                raise SourceUnavailable(f"source answered HTTP {response.status}")
            if not 200 <= response.status < 300:
                raise SourceFetchFailed(f"source answered HTTP {response.status}")
            body = await _read_capped(response, policy.max_bytes, progress)
            content_type = response.content_type if "Content-Type" in response.headers else None
            return body, content_type
    raise SourceFetchFailed(f"source redirects more than {policy.max_redirects} times")


async def _read_capped(
    response: aiohttp.ClientResponse, max_bytes: int, progress: _Progress
) -> bytes:
    too_large = f"source is larger than {max_bytes} bytes"
    if response.content_length is not None and response.content_length > max_bytes:
        raise TooLarge(too_large, param="url")
    body = bytearray()
    async for chunk in response.content.iter_chunked(CHUNK):
        body += chunk
        progress.received = len(body)
        if len(body) > max_bytes:
            raise TooLarge(too_large, param="url")
    return bytes(body)
