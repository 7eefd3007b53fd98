"""The fields of an API key as admins send them (POST/PATCH /v1/keys): parsed once, each
bad one a 400 naming it. Pure: no I/O."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from server.errors import InvalidId, InvalidParam
from server.names import validate_id

SCOPES = (
    "image.process",
    "image.metadata",
    "image.upload",
    "image.read",
    "image.delete",
    "image.urls",
    "image.transformations",
)
FIELDS = frozenset(
    {"name", "state", "rate_per_s", "burst", "daily_quota", "expires_at", "scopes", "prefix"}
)
MAX_NAME = 100
MAX_RATE = 100_000.0
MAX_BURST = 1_000_000
MAX_QUOTA = 10**12
MAX_UNIX = 253_402_300_799  # 9999-12-31T23:59:59Z: what RFC 3339 can write


@dataclass(frozen=True, slots=True)
class FieldDefaults:
    """What a key gets for the limits its creator leaves out (IMGCDN_KEY_*)."""

    rate_per_s: float
    burst: int
    daily_quota: int | None


def parse_fields(body: Any, defaults: FieldDefaults, creating: bool) -> dict[str, Any]:
    """A POST body (every field, defaults filled) or a PATCH body (only those given)."""
    if not isinstance(body, dict):
        raise InvalidParam("body", "a key is a JSON object")
    unknown = sorted(set(body) - FIELDS)
    if unknown:
        raise InvalidParam(unknown[0], f"unknown field {unknown[0]!r}")
    if not creating and not body:
        raise InvalidParam("body", "nothing to change: send one of " + ", ".join(sorted(FIELDS)))
    values: dict[str, Any] = {}
    if creating:
        values = {
            "name": None,
            "rate_per_s": defaults.rate_per_s,
            "burst": defaults.burst,
            "daily_quota": defaults.daily_quota,
            "expires_at": None,
            "scopes": SCOPES,
            "prefix": "",
        }
        if "name" not in body:
            raise InvalidParam("name", "name is required: say who or what the key is for")
    for name, raw in body.items():
        values[name] = _PARSERS[name](raw)
    return values


def _name(raw: Any) -> str:
    if not isinstance(raw, str) or not 1 <= len(raw) <= MAX_NAME or not raw.isprintable():
        raise InvalidParam("name", f"name must be 1..{MAX_NAME} printable characters")
    return raw


def _state(raw: Any) -> str:
    if raw not in ("active", "disabled"):
        raise InvalidParam("state", "state must be active or disabled")
    return str(raw)


def _rate(raw: Any) -> float:
    if (
        isinstance(raw, bool)
        or not isinstance(raw, (int, float))
        or not math.isfinite(raw)
        or not 0.001 <= raw <= MAX_RATE
    ):
        raise InvalidParam("rate_per_s", f"rate_per_s must be a number in 0.001..{MAX_RATE:g}")
    return float(raw)


def _integer(name: str, hi: int) -> Any:
    def parse(raw: Any) -> int:
        if isinstance(raw, bool) or not isinstance(raw, int) or not 1 <= raw <= hi:
            raise InvalidParam(name, f"{name} must be an integer in 1..{hi}")
        return raw

    return parse


def _quota(raw: Any) -> int | None:
    if raw is None:
        return None
    parsed: int = _integer("daily_quota", MAX_QUOTA)(raw)
    return parsed


def _expires_at(raw: Any) -> int | None:
    if raw is None:
        return None
    if isinstance(raw, (int, float)) and not isinstance(raw, bool):
        if not math.isfinite(raw) or not 0 <= raw <= MAX_UNIX:
            raise InvalidParam("expires_at", "expires_at in unix seconds must be 0..9999-12-31")
        return int(raw)
    if isinstance(raw, str) and len(raw) <= 64:
        try:
            when = datetime.fromisoformat(raw)
        except ValueError:
            when = None
        if when is not None and when.tzinfo is not None and "T" in raw.upper():
            return int(when.timestamp())
    raise InvalidParam(
        "expires_at",
        "expires_at is RFC 3339 with a time zone (2030-01-31T00:00:00Z), unix seconds, or null",
    )


def _scopes(raw: Any) -> tuple[str, ...]:
    if not isinstance(raw, list) or not raw or not all(isinstance(s, str) for s in raw):
        raise InvalidParam("scopes", "scopes is a non-empty list of: " + ", ".join(SCOPES))
    for scope in raw:
        if scope not in SCOPES:
            raise InvalidParam(
                "scopes", f"unknown scope {scope[:64]!r}: scopes are " + ", ".join(SCOPES)
            )
    return tuple(s for s in SCOPES if s in raw)


def _prefix(raw: Any) -> str:
    if raw == "":
        return ""
    if not isinstance(raw, str) or not raw.endswith("/"):
        raise InvalidParam("prefix", "prefix is a folder of asset ids ending in '/', or ''")
    try:
        validate_id(raw[:-1])
    except InvalidId as exc:
        raise InvalidParam("prefix", f"prefix: {exc.message}") from None
    return raw


_PARSERS = {
    "name": _name,
    "state": _state,
    "rate_per_s": _rate,
    "burst": _integer("burst", MAX_BURST),
    "daily_quota": _quota,
    "expires_at": _expires_at,
    "scopes": _scopes,
    "prefix": _prefix,
}


def rfc3339(unix: int) -> str:
    return datetime.fromtimestamp(unix, UTC).isoformat().replace("+00:00", "Z")
