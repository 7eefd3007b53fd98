"""Who is calling the processing API (SPEC §6): an API key or an admin token, its scope, and
its rate limit and daily quota, charged here once per request.

The key may come as `Authorization: Bearer`, `X-API-KEY`, `ailabapi-api-key` (seed 004's
header), the `api_key` / `appkey` query parameter, or the same names in the request's fields
(JSON body or form), in that order.
The RateLimit-* headers of a keyed request are left in `request.state`; app.py's request
middleware puts them on the answer, errors included (`rate_limit_headers`).
"""

from __future__ import annotations

import hmac
from collections.abc import Mapping
from dataclasses import dataclass

from starlette.requests import Request
from starlette.types import Scope

from server.errors import (
    ImgcdnError,
    KeyDisabled,
    KeyExpired,
    QuotaExceeded,
    RateLimited,
    ScopeDenied,
    Unauthorized,
)
from server.keyfields import SCOPES
from server.runtime import Runtime
from server.state.base import Charge

__all__ = ["SCOPES", "Caller", "authenticate", "rate_limit_headers"]

MAX_KEY_CHARS = 512
STATE_NAME = "imgcdn_rate_limit"
_QUERY_NAMES = ("api_key", "appkey")
# One message for an unknown key and a wrong secret: which one it was is for the owner only.
_NOT_RECOGNISED = "API key not recognised"


@dataclass(frozen=True, slots=True)
class Caller:
    key_id: str | None  # None: an admin token
    prefix: str  # asset id prefix the key is confined to, "" for all


async def authenticate(
    request: Request, scope: str, fields: Mapping[str, object] | None = None, units: int = 1
) -> Caller:
    """The caller, once its key is valid, allowed `scope`, and within its limits; else 401,
    403 or 429 (SPEC §6). A failing state store is a 503 (StateUnavailable). The request is
    one at the rate and `units` of the daily quota (a batch: one per item)."""
    if scope not in SCOPES:
        raise ValueError(f"unknown scope {scope!r}")  # a route's bug, not the caller's
    rt: Runtime = request.app.state.runtime
    presented = _presented(request, fields)
    if presented is None:
        raise Unauthorized(
            "this API needs a key: Authorization: Bearer <key>, X-API-KEY, or api_key"
        )
    if len(presented) > MAX_KEY_CHARS:
        raise Unauthorized(_NOT_RECOGNISED)
    token = presented.encode("utf-8", "surrogateescape")
    # Every admin token compared, always: timing says nothing about which one is close.
    if any([hmac.compare_digest(token, known) for known in rt.admin_tokens]):
        return Caller(None, "")
    key = await rt.keys.verify(presented)
    if key is None:
        raise Unauthorized(_NOT_RECOGNISED)
    state = key.state()
    refusal: ImgcdnError | None = None
    if state == "disabled":
        refusal = KeyDisabled(f"key {key.id} is disabled")
    elif state == "expired":
        refusal = KeyExpired(f"key {key.id} expired")
    elif scope not in key.scopes:
        refusal = ScopeDenied(f"key {key.id} does not have the scope {scope}")
    if refusal is not None:
        # A refused request spends nothing, but still says where the key stands.
        _remember(request, await rt.state.charge(key.id, key.policy, cost=0))
        raise refusal
    charge = await rt.state.charge(key.id, key.policy, units=units)
    _remember(request, charge)
    if charge.exceeded == "rate":
        raise RateLimited(
            f"key {key.id} is over {key.rate_per_s:g} requests/s (burst {key.burst})",
            charge.retry_after_s,
        )
    if charge.exceeded == "quota":
        wanted = "" if units == 1 else f" ({units} wanted for this request's items)"
        raise QuotaExceeded(
            f"key {key.id} has used its {key.daily_quota} requests for today (UTC){wanted}",
            charge.retry_after_s,
        )
    return Caller(key.id, key.prefix)


def _presented(request: Request, fields: Mapping[str, object] | None) -> str | None:
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    candidates: list[object] = []
    if scheme.lower() == "bearer":
        candidates.append(token.strip())
    candidates.append(request.headers.get("x-api-key", "").strip())
    candidates.append(request.headers.get("ailabapi-api-key", "").strip())
    candidates += [request.query_params.get(name) for name in _QUERY_NAMES]
    if fields is not None:
        candidates += [fields.get(name) for name in _QUERY_NAMES]
    return next((c for c in candidates if isinstance(c, str) and c), None)


def _remember(request: Request, charge: Charge) -> None:
    request.state.__setattr__(
        STATE_NAME,
        [
            (b"ratelimit-limit", str(charge.limit).encode()),
            (b"ratelimit-remaining", str(charge.remaining).encode()),
            (b"ratelimit-reset", str(charge.reset_s).encode()),
        ],
    )


def rate_limit_headers(scope: Scope) -> list[tuple[bytes, bytes]]:
    """The RateLimit-* headers `authenticate` left for this request (none for an admin
    token or a request without a known key)."""
    found: list[tuple[bytes, bytes]] = scope.get("state", {}).get(STATE_NAME, [])
    return found
