"""The shared state in one SQLite file in the data dir: exact across `serve --workers N`.

Rates use pyrate-limiter's TokenBucket (GCRA: one "theoretical arrival time" per key)
through its StateBucket, with this module's StateStore underneath. Each charge is one
`BEGIN IMMEDIATE` transaction that reads the key's rate and today's quota count, decides,
and writes both or neither, so concurrent workers queue on SQLite's write lock instead of
over-admitting (docs/design/processing-api.md §5 has the measurements). WAL lets readers
run beside that writer. The file's thread, flock turn and WAL set-up are state/sqlite.py's,
shared with the jobs' file.
"""

from __future__ import annotations

import math
import secrets
import sqlite3
import time
from pathlib import Path

import orjson
from pyrate_limiter import Duration, Rate, RateItem, StateBucket
from pyrate_limiter.abstracts.algorithm import Decision, State, StateAlgorithm
from pyrate_limiter.abstracts.store import StateStore as RateStore

from server.state.base import DAY_S, Charge, Claim, Policy, Stored
from server.state.limits import ALGORITHM, quota_day, rate_of, report, to_midnight_ms
from server.state.sqlite import SqliteFile, transaction

SWEEP_EVERY_S = 60.0
_SCHEMA = """
CREATE TABLE IF NOT EXISTS rate (key TEXT PRIMARY KEY, tat INTEGER NOT NULL, used_at REAL);
CREATE TABLE IF NOT EXISTS quota (key TEXT, day INTEGER, used INTEGER NOT NULL,
                                  PRIMARY KEY (key, day));
CREATE TABLE IF NOT EXISTS idem (scope TEXT PRIMARY KEY, fingerprint BLOB NOT NULL,
                                 token TEXT NOT NULL, done INTEGER NOT NULL, expires REAL NOT NULL,
                                 status INTEGER, headers BLOB, body BLOB);
"""


class _KeyRow(RateStore):
    """pyrate-limiter's view of one key's row; the caller holds the transaction. The daily
    quota is checked here too, after the rate admits, so a refusal by either spends nothing."""

    def __init__(
        self, db: sqlite3.Connection, key_id: str, policy: Policy, now_s: float, units: int = 1
    ) -> None:
        self.db, self.key_id, self.policy, self.now_s = db, key_id, policy, now_s
        self.units = units  # of the daily quota; the rate's weight is pyrate-limiter's
        self.day = quota_day(now_s)
        quota = policy.daily_quota
        self.quota_rate = Rate(quota, Duration.DAY) if quota else None
        self.tat = 0
        self.used = 0

    def load(self) -> None:
        row = self.db.execute("SELECT tat FROM rate WHERE key = ?", (self.key_id,)).fetchone()
        self.tat = int(row[0]) if row else 0
        row = self.db.execute(
            "SELECT used FROM quota WHERE key = ? AND day = ?", (self.key_id, self.day)
        ).fetchone()
        self.used = int(row[0]) if row else 0

    def check(
        self, algorithm: StateAlgorithm, rates: list[Rate], now: int, weight: int
    ) -> Decision:
        self.load()
        state, decision = algorithm.step(rates, (self.tat,), now, weight)
        if not decision.allowed:
            return decision
        quota = self.policy.daily_quota
        if self.quota_rate is not None and quota is not None and self.used + self.units > quota:
            return Decision(failing_rate=self.quota_rate, retry_after_ms=to_midnight_ms(self.now_s))
        self.tat, self.used = int(state[0]), self.used + self.units
        self.db.execute(
            "INSERT INTO rate (key, tat, used_at) VALUES (?, ?, ?) ON CONFLICT (key) "
            "DO UPDATE SET tat = excluded.tat, used_at = excluded.used_at",
            (self.key_id, self.tat, self.now_s),
        )
        self.db.execute(
            "INSERT INTO quota (key, day, used) VALUES (?, ?, ?) ON CONFLICT (key, day) "
            "DO UPDATE SET used = excluded.used",
            (self.key_id, self.day, self.used),
        )
        return decision

    def read(self, algorithm: StateAlgorithm, rates: list[Rate]) -> State:
        self.load()
        return (self.tat,)

    def reset(self) -> None:
        self.db.execute("DELETE FROM rate WHERE key = ?", (self.key_id,))


class SqliteState:
    """StateStore (server/state/base.py) over `<data dir>/state.sqlite3`."""

    def __init__(self, path: Path, timeout_s: float) -> None:
        self.path, self.timeout_s = path, timeout_s
        self._file = SqliteFile(path, timeout_s, _SCHEMA, "rate limit and idempotency state")
        self._run = self._file.run
        self._swept = 0.0

    async def charge(
        self, key_id: str, policy: Policy, cost: int = 1, units: int | None = None
    ) -> Charge:
        spent = cost if units is None else units
        return await self._run(lambda db: _charge(db, key_id, policy, cost, spent, time.time()))

    async def claim(self, scope: str, fingerprint: bytes, in_flight_s: float) -> Claim:
        return await self._run(lambda db: self._claim(db, scope, fingerprint, in_flight_s))

    async def finish(self, scope: str, token: str, stored: Stored, keep_s: float) -> None:
        headers = orjson.dumps(stored.headers)
        await self._run(
            lambda db: db.execute(
                "UPDATE idem SET done = 1, expires = ?, status = ?, headers = ?, body = ? "
                "WHERE scope = ? AND token = ?",
                (time.time() + keep_s, stored.status, headers, stored.body, scope, token),
            )
        )

    async def release(self, scope: str, token: str) -> None:
        await self._run(
            lambda db: db.execute(
                "DELETE FROM idem WHERE scope = ? AND token = ? AND done = 0", (scope, token)
            )
        )

    async def last_used(self, key_id: str) -> float | None:
        def read(db: sqlite3.Connection) -> float | None:
            row = db.execute("SELECT used_at FROM rate WHERE key = ?", (key_id,)).fetchone()
            return float(row[0]) if row and row[0] is not None else None

        return await self._run(read)

    async def close(self) -> None:
        await self._file.close()

    def _claim(self, db: sqlite3.Connection, scope: str, fingerprint: bytes, ttl: float) -> Claim:
        now = time.time()
        with transaction(db):
            if now - self._swept > SWEEP_EVERY_S:  # expired records and past days' counts
                self._swept = now
                db.execute("DELETE FROM idem WHERE expires < ?", (now,))
                db.execute("DELETE FROM quota WHERE day < ?", (int(now // DAY_S) - 1,))
            row = db.execute(
                "SELECT fingerprint, done, expires, status, headers, body FROM idem "
                "WHERE scope = ?",
                (scope,),
            ).fetchone()
            if row is not None and row[2] > now:
                if not secrets.compare_digest(row[0], fingerprint):
                    return Claim("reused")
                if not row[1]:
                    return Claim(
                        "in_progress", retry_after_s=max(1, min(5, math.ceil(row[2] - now)))
                    )
                if row[5] is not None:
                    headers = tuple((str(k), str(v)) for k, v in orjson.loads(row[4]))
                    return Claim("replay", stored=Stored(row[3], headers, bytes(row[5])))
            # None yet, expired (an in-flight mark of a killed process too), or kept without
            # its body (over the cap): this request runs, and holds the record meanwhile.
            token = secrets.token_hex(16)
            db.execute(
                "INSERT OR REPLACE INTO idem (scope, fingerprint, token, done, expires) "
                "VALUES (?, ?, ?, 0, ?)",
                (scope, fingerprint, token, now + ttl),
            )
            return Claim("run", token=token)


def _charge(
    db: sqlite3.Connection, key_id: str, policy: Policy, cost: int, units: int, now: float
) -> Charge:
    row = _KeyRow(db, key_id, policy, now, units)
    now_ms = int(now * 1000)
    if cost == 0:
        row.load()
        return report(policy, now_ms, row.tat, row.used)
    bucket = StateBucket([rate_of(policy)], ALGORITHM, row)
    with transaction(db):
        decision = bucket.put_decision(RateItem(key_id, now_ms, cost))
    assert isinstance(decision, Decision)  # a sync store gives a sync answer
    if decision.allowed:
        return report(policy, now_ms, row.tat, row.used)
    if decision.failing_rate is row.quota_rate:
        return report(policy, now_ms, row.tat, row.used, "quota")
    return report(policy, now_ms, row.tat, row.used, "rate", decision.retry_after_ms)
