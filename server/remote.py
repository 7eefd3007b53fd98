"""SSRF-safe fetching of source URLs (POST /v1/assets {"url"}).

Only http(s); a total deadline; a byte cap checked against Content-Length and while
streaming; at most 3 redirects; every address checked where the connection is made (after
DNS resolution, and again on every redirect), so no DNS trick reaches an internal address.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class FetchPolicy:
    max_bytes: int
    timeout_s: float = 10.0
    max_redirects: int = 3
    allowed_hosts: tuple[str, ...] = ()  # empty: any public host
    allow_private: bool = False  # tests only: lets loopback/private addresses through


async def fetch(url: str, policy: FetchPolicy) -> tuple[bytes, str | None]:
    """The body at `url` and its Content-Type, or an ImgcdnError naming why not."""
    raise NotImplementedError
