"""The shared-state Protocol: per-key rate limits and daily quotas, and idempotency records.

Every worker of a server (and, with Redis, every replica) sees the same state, so a limit
holds however requests are spread. local.py keeps it in SQLite in the data dir; a Redis
backend (issue #12) implements the same few calls. Backends raise StateUnavailable when
they cannot answer in time, which the client sees as a 503 with Retry-After.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Protocol

DAY_S = 86_400


@dataclass(frozen=True, slots=True)
class Policy:
    """A key's limits: `rate_per_s` on average with `burst` at once, and at most
    `daily_quota` requests per UTC day (None: no quota)."""

    rate_per_s: float
    burst: int
    daily_quota: int | None


@dataclass(frozen=True, slots=True)
class Charge:
    """What one charge found. `limit`/`remaining`/`reset_s` describe the limit nearest to
    exhaustion (RateLimit-* headers); `exceeded` says which refused, if one did."""

    exceeded: Literal["rate", "quota"] | None
    limit: int
    remaining: int
    reset_s: int
    retry_after_s: int = 0

    @property
    def allowed(self) -> bool:
        return self.exceeded is None


@dataclass(frozen=True, slots=True)
class Stored:
    """A finished answer kept for replay (body None: it was over the size cap)."""

    status: int
    headers: tuple[tuple[str, str], ...]
    body: bytes | None


@dataclass(frozen=True, slots=True)
class Claim:
    """The verdict on an idempotency key: `run` it (holding `token`), `replay` a stored
    answer, it is `in_progress` elsewhere, or it was `reused` for another request."""

    outcome: Literal["run", "replay", "in_progress", "reused"]
    token: str = ""
    stored: Stored | None = None
    retry_after_s: int = 1


class StateStore(Protocol):
    async def charge(
        self, key_id: str, policy: Policy, cost: int = 1, units: int | None = None
    ) -> Charge:
        """Spend `cost` requests of the key's rate and `units` (default `cost`) of its daily
        quota, both or neither, atomically across processes. `cost=0` only reports where
        the key stands. A batch is one request at the rate but one unit per item."""

    async def claim(self, scope: str, fingerprint: bytes, in_flight_s: float) -> Claim:
        """Look up the idempotency record `scope`; when there is none (or its in-flight mark
        is older than `in_flight_s`), mark it in flight with `fingerprint` and answer `run`."""

    async def finish(self, scope: str, token: str, stored: Stored, keep_s: float) -> None:
        """Keep the answer of the run holding `token` for `keep_s` seconds."""

    async def release(self, scope: str, token: str) -> None:
        """Drop the in-flight mark of the run holding `token`, so a retry can run."""

    async def last_used(self, key_id: str) -> float | None:
        """Unix time of the key's last charged request, or None."""

    async def close(self) -> None:
        """Release the backend's connections."""
