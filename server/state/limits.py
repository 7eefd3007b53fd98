"""The limits every state backend applies, in one place so that a key means the same on
SQLite (local.py) and on Redis (redis.py): a policy's rate as pyrate-limiter's TokenBucket
(GCRA) sees it, and the RateLimit-* report of where a key stands after a charge. Backends
only store the numbers: the rate's "theoretical arrival time" (tat, microseconds) and the
count of today's (UTC) requests.
"""

from __future__ import annotations

import math
from typing import Literal

from pyrate_limiter import Duration, Rate, TokenBucket

from server.state.base import DAY_S, Charge, Policy

ALGORITHM = TokenBucket()


def rate_of(policy: Policy) -> Rate:
    # Per 1000 s, so a fractional rate (0.5/s) is still an integer count; burst as given.
    return Rate(max(1, round(policy.rate_per_s * 1000)), 1000 * Duration.SECOND, policy.burst)


def quota_day(now_s: float) -> int:
    """The UTC day a request at `now_s` counts against (days since the epoch)."""
    return int(now_s // DAY_S)


def to_midnight_ms(now_s: float) -> int:
    return math.ceil((DAY_S - now_s % DAY_S) * 1000)


def report(
    policy: Policy,
    now_ms: int,
    tat: int,
    used: int,
    refused: Literal["rate", "quota"] | None = None,
    retry_after_ms: int | None = None,
) -> Charge:
    """The Charge for a key whose rate state is `tat` and who made `used` requests today;
    `refused` names the limit that refused this charge, if one did."""
    to_midnight = math.ceil(DAY_S - (now_ms / 1000) % DAY_S)
    if refused == "quota":
        return Charge("quota", policy.daily_quota or 0, 0, to_midnight, to_midnight)
    if refused == "rate":
        # No wait known: the cost never fits the burst; a second is as good as any.
        retry_s = math.ceil((retry_after_ms or 1000) / 1000)
        return Charge("rate", policy.burst, 0, retry_s, max(1, retry_s))
    owed = ALGORITHM.consumed([rate_of(policy)], (tat,), now_ms)
    rate_left = max(0, policy.burst - owed)
    refill_s = math.ceil(max(0, tat - now_ms * 1000) / 1_000_000)
    quota = policy.daily_quota
    if quota is not None and quota - used < rate_left:
        return Charge(None, quota, max(0, quota - used), to_midnight)
    return Charge(None, policy.burst, rate_left, refill_s)
