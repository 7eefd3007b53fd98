"""The StateStore contract (server/state/base.py), the same assertions for both backends:
SqliteState in a data dir, and RedisState against a real redis-server (tests/redisproc.py).
Whichever a deployment runs, a key's limits, its RateLimit-* figures and the idempotency
verdicts are the same."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path

import pytest

from server import redisconn
from server.errors import StateUnavailable
from server.state.base import DAY_S, Claim, Policy, StateStore, Stored
from server.state.local import SqliteState
from server.state.redis import RedisState

FP = b"\x01" * 32
OTHER_FP = b"\x01" * 31 + b"\x02"
STORED = Stored(201, (("content-type", "application/json"), ("etag", '"e1"')), b'{"ok":1}')


class Backend:
    """Opens a fresh store of one kind inside the test's event loop."""

    def __init__(self, kind: str, folder: Path, redis_url: str | None) -> None:
        self.kind, self.folder, self.redis_url = kind, folder, redis_url

    @contextlib.asynccontextmanager
    async def open(self, timeout_s: float = 2.0) -> AsyncIterator[StateStore]:
        if self.redis_url is None:
            state = SqliteState(self.folder / "state.sqlite3", timeout_s)
            try:
                yield state
            finally:
                await state.close()
        else:
            client = redisconn.connect(self.redis_url, timeout_s)
            try:
                yield RedisState(client, timeout_s)
            finally:
                await client.aclose()

    def run(self, body: Callable[[StateStore], Awaitable[object]], timeout_s: float = 2.0) -> None:
        async def main() -> None:
            async with self.open(timeout_s) as state:
                await body(state)

        asyncio.run(main())


@pytest.fixture(params=["sqlite", "redis"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    url = request.getfixturevalue("redis_url") if request.param == "redis" else None
    return Backend(request.param, tmp_path, url)


async def eventually(check: Callable[[], Awaitable[bool]], seconds: float = 10.0) -> None:
    """Poll `check` until it is true, or fail at the deadline (conftest.wait_until, async)."""
    deadline = time.monotonic() + seconds
    while not await check():
        assert time.monotonic() < deadline, "not within the deadline"
        await asyncio.sleep(0.02)


def test_charges_count_down_the_burst_then_the_rate_refuses_with_its_wait(backend):
    async def body(state: StateStore) -> None:
        policy = Policy(0.01, 3, None)
        remaining = [(await state.charge("k", policy)).remaining for _ in range(3)]
        assert remaining == [2, 1, 0]
        refused = await state.charge("k", policy)
        assert (refused.exceeded, refused.limit, refused.remaining) == ("rate", 3, 0)
        # One request per 100 s: the next is 100 s away.
        assert 99 <= refused.retry_after_s <= 100 and refused.reset_s == refused.retry_after_s

    backend.run(body)


def test_a_report_spends_nothing(backend):
    async def body(state: StateStore) -> None:
        policy = Policy(0.01, 5, None)
        fresh = await state.charge("k", policy, cost=0)
        assert (fresh.allowed, fresh.limit, fresh.remaining, fresh.reset_s) == (True, 5, 5, 0)
        await state.charge("k", policy)
        for _ in range(3):
            seen = await state.charge("k", policy, cost=0)
            assert (seen.allowed, seen.remaining) == (True, 4)
            assert 99 <= seen.reset_s <= 100  # until the spent unit is back

    backend.run(body)


def test_the_daily_quota_is_exact_and_refuses_until_midnight_utc(backend):
    async def body(state: StateStore) -> None:
        policy = Policy(1000, 1000, 4)
        seen = [await state.charge("k", policy) for _ in range(4)]
        # The quota is nearer exhaustion than the burst, so the figures describe it.
        assert [(c.allowed, c.limit, c.remaining) for c in seen] == [
            (True, 4, 3),
            (True, 4, 2),
            (True, 4, 1),
            (True, 4, 0),
        ]
        refused = await state.charge("k", policy)
        assert (refused.exceeded, refused.limit, refused.remaining) == ("quota", 4, 0)
        to_midnight = DAY_S - int(time.time()) % DAY_S
        assert abs(refused.retry_after_s - to_midnight) <= 2
        assert (await state.charge("k", policy, cost=0)).remaining == 0

    backend.run(body)


def test_a_key_over_both_limits_hears_about_the_rate(backend):
    async def body(state: StateStore) -> None:
        policy = Policy(0.01, 2, 2)
        assert [(await state.charge("k", policy)).allowed for _ in range(2)] == [True, True]
        refused = await state.charge("k", policy)
        assert refused.exceeded == "rate" and 99 <= refused.retry_after_s <= 100

    backend.run(body)


def test_a_refusal_by_the_rate_spends_none_of_the_quota(backend):
    async def body(state: StateStore) -> None:
        assert all([(await state.charge("k", Policy(0.001, 5, 6))).allowed for _ in range(5)])
        assert (await state.charge("k", Policy(0.001, 5, 6))).exceeded == "rate"
        # A larger burst (the key patched): the rate admits again, and exactly one unit of
        # the quota is left, the refused charge having given its reservation back.
        wider = Policy(0.001, 10, 6)
        last = await state.charge("k", wider)
        assert (last.allowed, last.limit, last.remaining) == (True, 6, 0)
        assert (await state.charge("k", wider)).exceeded == "quota"

    backend.run(body)


def test_units_spend_the_quota_while_the_rate_counts_one_request(backend):
    # A batch of n items: one request at the rate, n units of the daily quota.
    async def body(state: StateStore) -> None:
        policy = Policy(0.001, 2, 10)
        first = await state.charge("k", policy, units=7)
        assert (first.allowed, first.limit, first.remaining) == (True, 2, 1)  # the burst is nearer
        refused = await state.charge("k", policy, units=4)  # 7 + 4 > 10
        assert refused.exceeded == "quota"
        # The refusal spent nothing: 3 units and one request of the burst are left.
        last = await state.charge("k", policy, units=3)
        assert (last.allowed, last.limit, last.remaining) == (True, 2, 0)
        # Where the rate is wide, units alone decide: 10 of 10, then refused.
        wide = Policy(1000, 1000, 10)
        assert (await state.charge("other", wide, units=10)).allowed
        assert (await state.charge("other", wide, units=1)).exceeded == "quota"

    backend.run(body)


def test_a_cost_larger_than_the_burst_is_refused_by_the_rate(backend):
    async def body(state: StateStore) -> None:
        refused = await state.charge("k", Policy(100, 3, None), cost=4)
        assert refused.exceeded == "rate" and refused.retry_after_s >= 1
        assert (await state.charge("k", Policy(100, 3, None), cost=3)).allowed

    backend.run(body)


def test_keys_have_limits_of_their_own(backend):
    async def body(state: StateStore) -> None:
        policy = Policy(0.01, 1, 1)
        assert (await state.charge("a", policy)).allowed
        assert not (await state.charge("a", policy)).allowed
        assert (await state.charge("b", policy)).allowed

    backend.run(body)


@pytest.mark.parametrize("quota", [None, 1000], ids=["rate", "rate-and-quota"])
def test_concurrent_charges_admit_exactly_the_burst(backend, quota):
    async def body(state: StateStore) -> None:
        # Many rounds: on Redis, a charge timed earlier can arrive after one timed later
        # (a few rounds in a hundred), and must not lose the burst's last unit for it.
        policy = Policy(0.001, 10, quota)
        for round_ in range(25):
            key = f"k{round_}"
            charges = await asyncio.gather(*(state.charge(key, policy) for _ in range(30)))
            assert sum(c.allowed for c in charges) == 10
            assert {c.exceeded for c in charges if not c.allowed} == {"rate"}

    backend.run(body)


def test_last_used_is_the_time_of_the_last_admitted_charge(backend):
    async def body(state: StateStore) -> None:
        policy = Policy(0.01, 1, None)
        assert await state.last_used("k") is None
        before = time.time()
        assert (await state.charge("k", policy)).allowed
        used = await state.last_used("k")
        assert used is not None and before - 1 <= used <= time.time() + 1
        assert not (await state.charge("k", policy)).allowed
        await state.charge("k", policy, cost=0)
        assert await state.last_used("k") == used

    backend.run(body)


def test_a_claim_runs_once_then_is_in_progress_and_another_request_is_reused(backend):
    async def body(state: StateStore) -> None:
        first = await state.claim("s", FP, 30)
        assert first.outcome == "run" and len(first.token) >= 16
        again = await state.claim("s", FP, 30)
        assert again.outcome == "in_progress" and again.retry_after_s == 5
        assert (await state.claim("s", OTHER_FP, 30)).outcome == "reused"
        assert (await state.claim("other scope", FP, 30)).outcome == "run"

    backend.run(body)


def test_a_finished_answer_is_replayed_as_it_was_kept(backend):
    async def body(state: StateStore) -> None:
        claim = await state.claim("s", FP, 30)
        await state.finish("s", claim.token, STORED, 60)
        replay = await state.claim("s", FP, 30)
        assert replay == Claim("replay", stored=STORED)
        assert (await state.claim("s", OTHER_FP, 30)).outcome == "reused"
        await state.release("s", claim.token)  # a finished record is not released
        assert (await state.claim("s", FP, 30)).outcome == "replay"

    backend.run(body)


def test_only_the_token_holder_finishes_or_releases(backend):
    async def body(state: StateStore) -> None:
        claim = await state.claim("s", FP, 30)
        await state.finish("s", "not-the-token", STORED, 60)
        await state.release("s", "not-the-token")
        assert (await state.claim("s", FP, 30)).outcome == "in_progress"
        await state.release("s", claim.token)
        retry = await state.claim("s", FP, 30)
        assert retry.outcome == "run" and retry.token != claim.token

    backend.run(body)


def test_an_answer_kept_without_its_body_runs_again_but_refuses_another_request(backend):
    async def body(state: StateStore) -> None:
        claim = await state.claim("s", FP, 30)
        await state.finish("s", claim.token, Stored(200, (), None), 60)
        assert (await state.claim("s", OTHER_FP, 30)).outcome == "reused"
        again = await state.claim("s", FP, 30)
        assert again.outcome == "run" and again.token != claim.token

    backend.run(body)


def test_an_expired_mark_is_taken_over_and_its_late_finish_is_ignored(backend):
    async def body(state: StateStore) -> None:
        stale = await state.claim("s", FP, 0.2)
        taken: list[Claim] = []

        async def taken_over() -> bool:
            taken.append(await state.claim("s", FP, 30))
            return taken[-1].outcome == "run"

        await eventually(taken_over, seconds=5)
        assert {c.outcome for c in taken[:-1]} <= {"in_progress"}
        # The killed-and-late first run finishes: the record is the second run's still.
        await state.finish("s", stale.token, Stored(500, (), b"stale"), 60)
        assert (await state.claim("s", FP, 30)).outcome == "in_progress"
        await state.finish("s", taken[-1].token, STORED, 60)
        assert (await state.claim("s", FP, 30)).stored == STORED

    backend.run(body)


def test_a_kept_answer_expires_after_its_keep_time(backend):
    async def body(state: StateStore) -> None:
        claim = await state.claim("s", FP, 30)
        await state.finish("s", claim.token, STORED, 0.2)
        assert (await state.claim("s", OTHER_FP, 30)).outcome == "reused"

        async def forgotten() -> bool:
            return (await state.claim("s", OTHER_FP, 30)).outcome == "run"

        await eventually(forgotten, seconds=5)

    backend.run(body)


@pytest.fixture(params=["sqlite", "redis"])
def faulty(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[Backend, object]]:
    """A backend, and a context manager during which it does not answer: another process
    holding SQLite's write lock, or a paused (SIGSTOP) redis-server."""
    if request.param == "sqlite":
        backend = Backend("sqlite", tmp_path, None)

        @contextlib.contextmanager
        def fault() -> Iterator[None]:
            holder = sqlite3.connect(tmp_path / "state.sqlite3", isolation_level=None)
            holder.execute("BEGIN EXCLUSIVE")
            try:
                yield
            finally:
                holder.execute("ROLLBACK")
                holder.close()

        yield backend, fault
        return
    server = request.getfixturevalue("own_redis")

    @contextlib.contextmanager
    def paused() -> Iterator[None]:
        server.pause()
        try:
            yield
        finally:
            server.resume()

    yield Backend("redis", tmp_path, server.url), paused


def test_a_store_that_does_not_answer_is_state_unavailable_within_its_timeout(faulty):
    backend, fault = faulty
    timeout_s = 0.3

    async def body(state: StateStore) -> None:
        policy = Policy(100, 100, 1000)
        assert (await state.charge("k", policy)).allowed  # opened and answering
        with fault():  # type: ignore[operator]
            # (Reads may still answer: SQLite's readers pass a writer's lock in WAL mode.)
            for call in (lambda: state.charge("k", policy), lambda: state.claim("s", FP, 30)):
                started = time.monotonic()
                with pytest.raises(StateUnavailable) as caught:
                    await call()
                assert time.monotonic() - started < timeout_s + 1.5
                assert caught.value.status == 503 and "127.0.0.1" not in caught.value.message
        assert (await state.charge("k", policy)).allowed
        assert (await state.claim("s", FP, 30)).outcome == "run"

    backend.run(body, timeout_s=timeout_s)
