"""The shared state on Redis (IMGCDN_REDIS_URL): the calls and answers of local.py's SQLite
file, exact across every process of every replica. Thin adapters over Redis's own atomicity:

- rate: pyrate-limiter's RedisStateStore (its GCRA in Lua, one hash `imgcdn:rate:<key>`)
  with the same TokenBucket and rate_of(policy) as embedded (limits.py);
- daily quota: a counter per key and UTC day, `imgcdn:quota:<key>:<day>`, reserved by a
  Lua script *before* the rate is charged and given back when the rate refuses. GCRA
  spends what it admits, so the order is what keeps a refusal by either free; a refusal
  can be spurious only at the quota's edge, while a rate-refused charge holds its unit
  for a round trip (docs/design/jobs.md §2);
- idempotency: one hash `imgcdn:idem:<scope>` per record, whose expiry is its in-flight
  mark or its keep time, and three short Lua scripts with the token guard: a run whose mark
  expired never overwrites the record of the run that replaced it;
- last use: `imgcdn:used:<key>`, unix seconds.

A call takes at most IMGCDN_STATE_TIMEOUT_S in all; any Redis error or timeout is
StateUnavailable (503 with Retry-After). A charge cut off between its quota reservation
and the rate leaves that unit spent: a fault may refuse one request too many, never admit one.
"""

from __future__ import annotations

import asyncio
import math
import secrets
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import orjson
from pyrate_limiter.abstracts.algorithm import Decision
from pyrate_limiter.abstracts.store import StateStore as RateStore
from pyrate_limiter.buckets import RedisStateStore
from redis.asyncio import Redis
from redis.exceptions import RedisError

from server.errors import StateUnavailable
from server.state.base import DAY_S, Charge, Claim, Policy, Stored
from server.state.limits import ALGORITHM, quota_day, rate_of, report

T = TypeVar("T")
PREFIX = "imgcdn:"
# Past midnight the day's counter is dead; an hour's slack covers clocks a little behind.
QUOTA_SLACK_S = 3600

# KEYS[1] today's counter. ARGV: cost, quota, expiry (unix s). {1, used} or {0, used}.
_RESERVE = """
local used = tonumber(redis.call('GET', KEYS[1]) or '0')
local cost = tonumber(ARGV[1])
if used + cost > tonumber(ARGV[2]) then return {0, used} end
used = redis.call('INCRBY', KEYS[1], cost)
redis.call('EXPIREAT', KEYS[1], ARGV[3])
return {1, used}
"""
# Only while the counter lives: a DECRBY on an expired day would start one at -cost.
_GIVE_BACK = """
if redis.call('EXISTS', KEYS[1]) == 1 then return redis.call('DECRBY', KEYS[1], ARGV[1]) end
return 0
"""
# KEYS[1] the record. ARGV: fingerprint, new token, in-flight ms. The fingerprint compare
# looks at every byte whatever differs (local.py's compare_digest, in Lua).
_CLAIM = """
local rec = redis.call('HMGET', KEYS[1], 'fp', 'done', 'status', 'headers', 'body')
if rec[1] then
  local a, b, diff = rec[1], ARGV[1], 0
  if #a ~= #b then diff = 1 end
  for i = 1, math.min(#a, #b) do
    diff = bit.bor(diff, bit.bxor(string.byte(a, i), string.byte(b, i)))
  end
  if diff ~= 0 then return {'reused'} end
  if rec[2] == '0' then return {'in_progress', redis.call('PTTL', KEYS[1])} end
  if rec[5] then return {'replay', rec[3], rec[4], rec[5]} end
end
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], 'fp', ARGV[1], 'token', ARGV[2], 'done', '0')
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return {'run'}
"""
# ARGV: token, keep ms, status, headers[, body]. A body over the cap is not kept: the
# record then only refuses another request, and the same one runs again (local.py).
_FINISH = """
if redis.call('HGET', KEYS[1], 'token') ~= ARGV[1] then return 0 end
redis.call('HSET', KEYS[1], 'done', '1', 'status', ARGV[3], 'headers', ARGV[4])
if #ARGV >= 5 then redis.call('HSET', KEYS[1], 'body', ARGV[5]) end
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return 1
"""
_RELEASE = """
local rec = redis.call('HMGET', KEYS[1], 'token', 'done')
if rec[1] == ARGV[1] and rec[2] == '0' then return redis.call('DEL', KEYS[1]) end
return 0
"""


class RedisState:
    """StateStore (server/state/base.py) over Redis. The client is the Runtime's (redisconn),
    opened and closed there; this holds nothing of its own to release."""

    def __init__(self, client: Redis, timeout_s: float) -> None:
        self.client, self.timeout_s = client, timeout_s
        # Registered once: redis-py sends EVALSHA and loads the script again on NOSCRIPT
        # (a restarted Redis), so nothing here has to know.
        self._reserve = client.register_script(_RESERVE)
        self._give_back = client.register_script(_GIVE_BACK)
        self._claim = client.register_script(_CLAIM)
        self._finish = client.register_script(_FINISH)
        self._release = client.register_script(_RELEASE)

    async def _call(self, work: Callable[[], Awaitable[T]]) -> T:
        try:
            async with asyncio.timeout(self.timeout_s):
                return await work()
        except (RedisError, OSError) as exc:  # TimeoutError (ours or the socket's) included
            raise StateUnavailable("rate limit and idempotency state unavailable") from exc

    def _rate(self, key_id: str) -> RateStore:
        return RedisStateStore(self.client, f"{PREFIX}rate:{key_id}")

    async def _tat(self, key_id: str, policy: Policy) -> int:
        state = self._rate(key_id).read(ALGORITHM, [rate_of(policy)])
        found = await state if not isinstance(state, tuple) else state
        return int(found[0])

    async def charge(
        self, key_id: str, policy: Policy, cost: int = 1, units: int | None = None
    ) -> Charge:
        spent = cost if units is None else units
        return await self._call(lambda: self._charge(key_id, policy, cost, spent, time.time()))

    async def _charge(
        self, key_id: str, policy: Policy, cost: int, units: int, now: float
    ) -> Charge:
        now_ms, day = int(now * 1000), quota_day(now)
        quota_key = f"{PREFIX}quota:{key_id}:{day}"
        if cost == 0:
            used = int(await self.client.get(quota_key) or 0)
            return report(policy, now_ms, await self._tat(key_id, policy), used)
        used = 0
        if policy.daily_quota is not None:
            expires = (day + 1) * DAY_S + QUOTA_SLACK_S
            reply = await self._reserve(keys=[quota_key], args=[units, policy.daily_quota, expires])
            admitted, used = (int(n) for n in reply)
            if not admitted:
                # SQLite looks at the rate first: a key over both hears about the rate.
                tat = await self._tat(key_id, policy)
                _, decision = ALGORITHM.step([rate_of(policy)], (tat,), now_ms, cost)
                if not decision.allowed:
                    return report(policy, now_ms, tat, used, "rate", decision.retry_after_ms)
                return report(policy, now_ms, tat, used, "quota")
        decision = await self._spend(key_id, policy, now_ms, cost)
        fresh_ms = int(time.time() * 1000)
        if decision.retry_after_ms is not None and decision.retry_after_ms <= fresh_ms - now_ms:
            # The clock was read before the round trip, and a charge timed later may have
            # reached Redis first: refused only for being "early" by less than the trip
            # took, this charge tries once more timed now (SQLite reads the clock inside
            # its lock, so it never sees this). Without it a burst of 10 admitted 9 under
            # load.
            now, now_ms = fresh_ms / 1000, fresh_ms
            decision = await self._spend(key_id, policy, now_ms, cost)
        if not decision.allowed:
            if policy.daily_quota is not None:
                await self._give_back(keys=[quota_key], args=[units])
            return report(policy, now_ms, 0, used, "rate", decision.retry_after_ms)
        # The state read after the charge is for the headers only: another replica's charge
        # in between can make `remaining` lower than it was for this request, never higher.
        _, tat = await asyncio.gather(
            self.client.set(f"{PREFIX}used:{key_id}", repr(now)), self._tat(key_id, policy)
        )
        return report(policy, now_ms, tat, used)

    async def _spend(self, key_id: str, policy: Policy, now_ms: int, cost: int) -> Decision:
        checked = self._rate(key_id).check(ALGORITHM, [rate_of(policy)], now_ms, cost)
        return await checked if not isinstance(checked, Decision) else checked

    async def claim(self, scope: str, fingerprint: bytes, in_flight_s: float) -> Claim:
        token = secrets.token_hex(16)
        args: list[bytes | str | int] = [fingerprint, token, max(1, math.ceil(in_flight_s * 1000))]
        reply = await self._call(lambda: self._claim(keys=[_idem(scope)], args=args))
        verdict = _text(reply[0])
        if verdict == "run":
            return Claim("run", token=token)
        if verdict == "reused":
            return Claim("reused")
        if verdict == "in_progress":
            left_s = max(0, int(reply[1])) / 1000
            return Claim("in_progress", retry_after_s=max(1, min(5, math.ceil(left_s))))
        headers = tuple((str(k), str(v)) for k, v in orjson.loads(reply[2]))
        return Claim("replay", stored=Stored(int(reply[1]), headers, bytes(reply[3])))

    async def finish(self, scope: str, token: str, stored: Stored, keep_s: float) -> None:
        args: list[bytes | str | int] = [token, max(1, math.ceil(keep_s * 1000)), stored.status]
        args.append(orjson.dumps(stored.headers))
        if stored.body is not None:
            args.append(stored.body)
        await self._call(lambda: self._finish(keys=[_idem(scope)], args=args))

    async def release(self, scope: str, token: str) -> None:
        await self._call(lambda: self._release(keys=[_idem(scope)], args=[token]))

    async def last_used(self, key_id: str) -> float | None:
        found = await self._call(lambda: self.client.get(f"{PREFIX}used:{key_id}"))
        return float(found) if found is not None else None

    async def close(self) -> None:
        """Nothing to do: the Runtime closes the client after everything that uses it."""


def _idem(scope: str) -> str:
    return f"{PREFIX}idem:{scope}"


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
