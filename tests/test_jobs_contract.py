"""The JobStore contract (server/jobs/store.py), run against every backend: the counts stay
exact, `finish_item` answers True exactly once per job however often and however
concurrently items finish, cancel is idempotent, and a job is invisible to other owners.

A backend joins by one line in BACKENDS: a function of (request, tmp_path) that answers an
opener, an async context manager yielding a fresh, empty store.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any

import pytest

from server import redisconn
from server.jobs.model import ItemOutcome, NewJob, WebhookState
from server.jobs.redis_store import RedisJobs
from server.jobs.sqlite_store import SqliteJobs
from server.jobs.store import JobStore

Opener = Callable[[], AbstractAsyncContextManager[JobStore]]
OK = ItemOutcome(
    "succeeded",
    result={
        "image_url": "http://x/r/abc.jpg",
        "mime": "image/jpeg",
        "width": 800,
        "height": 533,
        "bytes": 51234,
    },
)
BAD = ItemOutcome("failed", error={"code": "source_unreachable", "message": "no route"})


def _redis(request: pytest.FixtureRequest, tmp_path: Path) -> Opener:
    url = request.getfixturevalue("redis_url")

    @contextlib.asynccontextmanager
    async def opener() -> AsyncIterator[JobStore]:
        client = redisconn.connect(url, 2.0)
        try:
            yield RedisJobs(client, keep_s=3600)
        finally:
            await client.aclose()

    return opener


def _sqlite(request: pytest.FixtureRequest, tmp_path: Path) -> Opener:
    @contextlib.asynccontextmanager
    async def opener() -> AsyncIterator[JobStore]:
        store = SqliteJobs(tmp_path / "jobs.sqlite3", 2.0)
        try:
            yield store
        finally:
            await store.close()

    return opener


BACKENDS: dict[str, Callable[[pytest.FixtureRequest, Path], Opener]] = {
    "redis": _redis,
    "sqlite": _sqlite,
}


@pytest.fixture(params=sorted(BACKENDS))
def run(request: pytest.FixtureRequest, tmp_path: Path) -> Callable[..., Any]:
    """run(scenario): asyncio.run(scenario(store)) on a fresh store of the backend."""
    opener = BACKENDS[request.param](request, tmp_path)

    def go(scenario: Callable[[JobStore], Coroutine[Any, Any, Any]]) -> Any:
        async def main() -> Any:
            async with opener() as store:
                return await scenario(store)

        return asyncio.run(main())

    return go


def new_job(n: int = 3, owner: str = "key-a", webhook: str | None = None, **kw: Any) -> NewJob:
    items = tuple(
        {
            "image": f"https://img.example/{i}.jpg",
            "ops": [{"op": "resize", "params": {"width": 100 + i}}],
        }
        for i in range(n)
    )
    job_id = kw.pop("id", f"job{time.monotonic_ns()}")
    return NewJob(
        id=job_id,
        owner=owner,
        kind="batch",
        items=items,
        created_at=time.time(),
        webhook_url=webhook,
        base_url="http://cdn.example",
        **kw,
    )


def test_a_created_job_has_every_item_pending_and_only_its_owner_sees_it(run):
    async def scenario(store: JobStore) -> None:
        made = await store.create(new_job(3, webhook="https://hook.example/x"))
        assert (made.status, made.count, made.done, made.failed, made.cancelled) == (
            "queued",
            3,
            0,
            0,
            0,
        )
        assert [(i.index, i.status, i.attempts) for i in made.items] == [
            (0, "pending", 0),
            (1, "pending", 0),
            (2, "pending", 0),
        ]
        assert made.webhook is not None and made.webhook.url == "https://hook.example/x"
        assert made.webhook.status == "pending" and made.base_url == "http://cdn.example"
        assert await store.get(made.id, "key-a") == made
        assert await store.get(made.id, None) == made  # the engine sees every job
        assert await store.get(made.id, "key-b") is None
        assert await store.get("no-such-job", "key-a") is None

    run(scenario)


def test_starting_an_item_hands_out_its_spec_and_a_rerun_counts_an_attempt(run):
    async def scenario(store: JobStore) -> None:
        made = await store.create(new_job(2))
        spec = await store.start_item(made.id, 1)
        assert spec == {
            "image": "https://img.example/1.jpg",
            "ops": [{"op": "resize", "params": {"width": 101}}],
        }
        assert await store.start_item(made.id, 1) == spec  # its first runner died
        job = await store.get(made.id, "key-a")
        assert job is not None and job.status == "running"
        assert (job.items[1].status, job.items[1].attempts) == ("running", 2)
        assert job.items[0].status == "pending"
        assert await store.start_item(made.id, 7) is None
        assert await store.start_item("no-such-job", 0) is None

    run(scenario)


def test_an_item_finished_twice_counts_once_and_the_last_finish_ends_the_job(run):
    async def scenario(store: JobStore) -> None:
        made = await store.create(new_job(2))
        for i in (0, 1):
            await store.start_item(made.id, i)
        assert await store.finish_item(made.id, 0, OK) is False
        assert await store.finish_item(made.id, 0, BAD) is False  # a re-run: changes nothing
        assert await store.start_item(made.id, 0) is None  # ended: its message is just acked
        assert await store.finish_item(made.id, 1, BAD) is True
        assert await store.finish_item(made.id, 1, BAD) is False
        job = await store.get(made.id, "key-a")
        assert job is not None and (job.status, job.done, job.failed) == ("completed", 1, 1)
        assert job.finished_at is not None and job.finished_at >= job.created_at
        assert (job.items[0].status, job.items[0].result, job.items[0].error) == (
            "succeeded",
            OK.result,
            None,
        )
        assert (job.items[1].status, job.items[1].result, job.items[1].error) == (
            "failed",
            None,
            BAD.error,
        )
        assert await store.finish_item("no-such-job", 0, OK) is False

    run(scenario)


def test_concurrent_finishes_end_the_job_exactly_once(run):
    async def scenario(store: JobStore) -> list[bool]:
        made = await store.create(new_job(50))
        await asyncio.gather(*(store.start_item(made.id, i) for i in range(50)))
        # Every item finished twice at once, as two replicas that both ran it would.
        finishes = [store.finish_item(made.id, i % 50, OK) for i in range(100)]
        answers = await asyncio.gather(*finishes)
        job = await store.get(made.id, None)
        assert job is not None and (job.status, job.done, job.failed) == ("completed", 50, 0)
        return answers

    assert sum(run(scenario)) == 1


def test_cancel_drops_pending_items_lets_running_ones_finish_and_is_idempotent(run):
    async def scenario(store: JobStore) -> None:
        made = await store.create(new_job(4, webhook="https://hook.example/x"))
        await store.start_item(made.id, 0)
        await store.start_item(made.id, 1)
        await store.finish_item(made.id, 1, OK)
        assert await store.cancel(made.id, "key-b") is None  # another key's job: not found
        job = await store.cancel(made.id, "key-a")
        assert job is not None and (job.status, job.done, job.cancelled) == ("cancelled", 1, 2)
        assert [i.status for i in job.items] == ["running", "succeeded", "cancelled", "cancelled"]
        assert job.finished_at is None  # item 0 is still running
        assert await store.cancel(made.id, "key-a") == job  # idempotent
        assert await store.start_item(made.id, 2) is None  # a cancelled item never runs
        assert await store.finish_item(made.id, 0, BAD) is True  # the last running one ends it
        ended = await store.get(made.id, "key-a")
        assert ended is not None and ended.status == "cancelled" and ended.finished_at
        assert (ended.done, ended.failed, ended.cancelled) == (1, 1, 2)
        assert await store.cancel(made.id, None) == ended
        assert await store.cancel("no-such-job", "key-a") is None

    run(scenario)


def test_cancelling_a_job_with_nothing_running_ends_it_at_once(run):
    async def scenario(store: JobStore) -> None:
        made = await store.create(new_job(3))
        job = await store.cancel(made.id, "key-a")
        assert job is not None and (job.status, job.cancelled) == ("cancelled", 3)
        assert job.finished_at is not None

    run(scenario)


def test_cancelling_a_completed_job_changes_nothing(run):
    async def scenario(store: JobStore) -> None:
        made = await store.create(new_job(1))
        await store.start_item(made.id, 0)
        assert await store.finish_item(made.id, 0, OK) is True
        before = await store.get(made.id, "key-a")
        assert await store.cancel(made.id, "key-a") == before
        assert before is not None and before.status == "completed"

    run(scenario)


def test_a_webhook_state_is_recorded_and_never_creates_a_job(run):
    async def scenario(store: JobStore) -> None:
        made = await store.create(new_job(1, webhook="https://hook.example/x"))
        state = WebhookState(
            url="https://hook.example/x",
            status="retrying",
            attempts=2,
            next_at=time.time() + 10,
            error="HTTP 500",
        )
        await store.set_webhook(made.id, state)
        job = await store.get(made.id, "key-a")
        assert job is not None and job.webhook == state
        done = WebhookState(url="https://hook.example/x", status="delivered", attempts=3)
        await store.set_webhook(made.id, done)
        job = await store.get(made.id, "key-a")
        assert job is not None and job.webhook == done
        await store.set_webhook("no-such-job", done)
        assert await store.get("no-such-job", None) is None

    run(scenario)


def test_counts_give_items_by_state_over_all_jobs(run):
    async def scenario(store: JobStore) -> dict[str, int]:
        first = await store.create(new_job(3))
        second = await store.create(new_job(2, owner="key-b"))
        await store.start_item(first.id, 0)
        await store.start_item(first.id, 1)
        await store.finish_item(first.id, 1, OK)
        await store.start_item(second.id, 0)
        await store.finish_item(second.id, 0, BAD)
        await store.cancel(second.id, "key-b")
        return await store.counts()

    counts = run(scenario)
    assert {
        k: counts.get(k, 0) for k in ("pending", "running", "succeeded", "failed", "cancelled")
    } == {"pending": 1, "running": 1, "succeeded": 1, "failed": 1, "cancelled": 1}


def test_sweep_drops_jobs_ended_longer_ago_than_the_keep_time_only(run):
    async def scenario(store: JobStore) -> None:
        ended = await store.create(new_job(1))
        await store.start_item(ended.id, 0)
        await store.finish_item(ended.id, 0, OK)
        running = await store.create(new_job(1))
        await store.start_item(running.id, 0)
        assert await store.sweep(time.time(), 60) == 0  # ended just now: kept
        assert await store.sweep(time.time() + 120, 60) == 1
        assert await store.get(ended.id, None) is None
        assert await store.get(running.id, None) is not None

    run(scenario)
