"""How each IMGCDN_* value is read: one small parser per kind of value, each raising
ValueError with the reason, which settings.py prefixes with the variable's name."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

from server.origins import SourceOrigin


def int_in(lo: int, hi: int) -> Callable[[str], int]:
    def parse(raw: str) -> int:
        try:
            value = int(raw.replace("_", ""))
        except ValueError:
            raise ValueError(f"must be an integer in {lo}..{hi}") from None
        if not lo <= value <= hi:
            raise ValueError(f"must be in {lo}..{hi}")
        return value

    return parse


def float_in(lo: float, hi: float) -> Callable[[str], float]:
    def parse(raw: str) -> float:
        try:
            value = float(raw)
        except ValueError:
            raise ValueError(f"must be a number in {lo:g}..{hi:g}") from None
        if not lo <= value <= hi:
            raise ValueError(f"must be in {lo:g}..{hi:g}")
        return value

    return parse


def one_of(*options: str) -> Callable[[str], str]:
    def parse(raw: str) -> str:
        if raw not in options:
            raise ValueError(f"must be one of {', '.join(options)}")
        return raw

    return parse


def storage_url(raw: str) -> str:
    if raw == "file":
        return raw
    if raw.startswith("s3://"):
        bucket = raw[5:].split("/", 1)[0]
        if not 3 <= len(bucket) <= 63 or not all(
            c.islower() or c.isdigit() or c in ".-" for c in bucket
        ):
            raise ValueError("the bucket name must be 3..63 of a-z 0-9 . -")
        return raw.rstrip("/")
    raise ValueError("must be file or s3://bucket/prefix")


def url_list(raw: str) -> tuple[str, ...]:
    urls = tuple(u.strip() for u in raw.split(",") if u.strip())
    for url in urls:
        if not url.startswith(("http://", "https://")):
            raise ValueError(f"{url!r} is not an http(s) URL")
    return urls


def optional_url(raw: str) -> str:
    if raw and not raw.startswith(("http://", "https://")):
        raise ValueError("must be an http(s) URL")
    return raw


def token_list(raw: str) -> tuple[str, ...]:
    tokens = tuple(t.strip() for t in raw.split(",") if t.strip())
    if any(len(t) < 16 for t in tokens):
        raise ValueError("every token must be at least 16 characters")
    return tokens


def key_list(raw: str) -> tuple[str, ...]:
    keys = tuple(k.strip() for k in raw.split(",") if k.strip())
    if any(len(k) < 32 for k in keys):
        raise ValueError("every key must be at least 32 characters (use 32+ random bytes)")
    return keys


def flag(raw: str) -> bool:
    if raw not in ("0", "1", "true", "false"):
        raise ValueError("must be 0 or 1")
    return raw in ("1", "true")


def origin_list(raw: str) -> tuple[SourceOrigin, ...]:
    return tuple(SourceOrigin.parse(entry) for entry in raw.split(",") if entry.strip())


def base_url(raw: str) -> str:
    """An absolute http(s) base URL for result links, without a query or fragment."""
    if not raw:
        return raw
    parsed = urlsplit(raw)
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        raise ValueError("must be an absolute http(s) URL, e.g. https://img.example.com")
    if parsed.query or parsed.fragment or raw.endswith(("?", "#")):
        raise ValueError("must have no query or fragment")
    if any(c.isspace() or ord(c) < 0x21 or ord(c) > 0x7E for c in raw):
        raise ValueError("must be printable ASCII without spaces")
    return raw.rstrip("/")


def nonempty_path(raw: str) -> Path:
    if not raw:
        raise ValueError("must not be empty")
    return Path(raw)


def redis_location(raw: str) -> str:
    """'' (no Redis) or a redis://, rediss:// or unix:// URL, as redis-py takes them."""
    if raw and urlsplit(raw).scheme not in ("redis", "rediss", "unix"):
        raise ValueError("must be a redis://, rediss:// or unix:// URL (or empty: no Redis)")
    return raw


def webhook_secret(raw: str) -> str:
    """'' (generated in the data dir) or a secret of at least 32 characters."""
    if raw and len(raw) < 32:
        raise ValueError("must be at least 32 characters (use 32+ random bytes)")
    if any(c.isspace() for c in raw):
        raise ValueError("must not contain spaces")
    return raw


def onnx_file(raw: str) -> str:
    """'' (no model) or the path of an existing .onnx file, checked at start so a typo is
    one line at boot, not a 500 at the first cut-out."""
    if raw and not (raw.endswith(".onnx") and Path(raw).is_file()):
        raise ValueError("must be the path of an existing .onnx file (or empty: no model)")
    return raw
