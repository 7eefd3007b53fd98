"""RedisJobs beyond the JobStore contract (tests/test_jobs_contract.py): an ended job
expires by itself after the keep time, processes racing to finish the same items end the
job exactly once, and a Redis that hangs is a StateUnavailable, not a hang or a 500."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import textwrap
import time

import pytest

from server import redisconn
from server.errors import StateUnavailable
from server.jobs.model import ItemOutcome, NewJob
from server.jobs.redis_store import RedisJobs

OK = ItemOutcome("succeeded", result={"image_url": "http://x/r/a.jpg"})


def new_job(job_id: str, n: int) -> NewJob:
    items = tuple({"image": f"https://img.example/{i}.jpg", "ops": []} for i in range(n))
    return NewJob(id=job_id, owner="key-a", kind="batch", items=items, created_at=time.time())


def test_an_ended_job_expires_after_the_keep_time_its_specs_at_once_and_a_running_one_stays(
    redis_url,
):
    async def scenario() -> tuple[list[int], list[int]]:
        client = redisconn.connect(redis_url, 2.0)
        try:
            store = RedisJobs(client, keep_s=600)
            for job_id in ("ends", "runs"):
                await store.create(new_job(job_id, 2))
                await store.start_item(job_id, 0)
                await store.finish_item(job_id, 0, OK)
            await store.start_item("ends", 1)
            assert await store.finish_item("ends", 1, OK) is True
            keys = ("imgcdn:job:{%s}", "imgcdn:job:{%s}:items", "imgcdn:job:{%s}:specs")
            ended = [await client.ttl(key % "ends") for key in keys]
            running = [await client.ttl(key % "runs") for key in keys]
            return ended, running
        finally:
            await client.aclose()

    ended, running = asyncio.run(scenario())
    assert all(590 <= ttl <= 600 for ttl in ended[:2]), ended
    assert ended[2] == -2  # the specs (inline base64 images, perhaps) are gone already
    assert running == [-1, -1, -1]  # kept while it runs, however long


RACER = textwrap.dedent("""
    import asyncio, sys
    from server import redisconn
    from server.jobs.model import ItemOutcome
    from server.jobs.redis_store import RedisJobs

    async def main():
        client = redisconn.connect(sys.argv[1], 60.0)
        store = RedisJobs(client)
        ok = ItemOutcome("succeeded", result={"n": sys.argv[2]})
        await client.rpush("racers-ready", sys.argv[2])
        await client.blpop(["go"], timeout=0)  # the barrier: all start finishing at once
        ended = await asyncio.gather(*(store.finish_item("race", i, ok) for i in range(40)))
        print(sum(ended))
        await client.aclose()

    asyncio.run(main())
""")


def test_processes_racing_to_finish_the_same_items_end_the_job_exactly_once(redis_url):
    async def setup() -> None:
        client = redisconn.connect(redis_url, 2.0)
        store = RedisJobs(client)
        await store.create(new_job("race", 40))
        await asyncio.gather(*(store.start_item("race", i) for i in range(40)))
        await client.aclose()

    asyncio.run(setup())
    racers = [
        subprocess.Popen(
            [sys.executable, "-c", RACER, redis_url, str(n)], stdout=subprocess.PIPE, text=True
        )
        for n in range(4)
    ]

    async def release() -> None:
        client = redisconn.connect(redis_url, 60.0)
        for _ in racers:
            await client.blpop(["racers-ready"], timeout=30)
        await client.rpush("go", *["go"] * len(racers))
        await client.aclose()

    asyncio.run(release())
    ended = 0
    for racer in racers:
        out, _ = racer.communicate(timeout=60)
        assert racer.returncode == 0
        ended += int(out)
    assert ended == 1

    async def check() -> None:
        client = redisconn.connect(redis_url, 2.0)
        job = await RedisJobs(client).get("race", "key-a")
        await client.aclose()
        assert job is not None and (job.status, job.done, job.failed) == ("completed", 40, 0)
        assert {item.result["n"] for item in job.items if item.result} <= {"0", "1", "2", "3"}

    asyncio.run(check())


def test_a_job_id_that_is_not_a_plain_hash_tag_is_simply_not_found(redis_url):
    async def scenario() -> None:
        client = redisconn.connect(redis_url, 2.0)
        try:
            store = RedisJobs(client)
            for job_id in ("a}b{c", "{x}", ""):
                assert await store.get(job_id, "key-a") is None
                assert await store.cancel(job_id, "key-a") is None
                assert await store.start_item(job_id, 0) is None
                assert await store.finish_item(job_id, 0, OK) is False
        finally:
            await client.aclose()

    asyncio.run(scenario())


def test_a_redis_that_hangs_is_state_unavailable_within_the_timeout(own_redis):
    async def scenario() -> float:
        client = redisconn.connect(own_redis.url, 0.5)
        try:
            store = RedisJobs(client)
            await store.create(new_job("j", 1))
            own_redis.pause()
            started = time.monotonic()
            for call in (store.get("j", "key-a"), store.finish_item("j", 0, OK), store.counts()):
                with pytest.raises(StateUnavailable):
                    await call
            return (time.monotonic() - started) / 3
        finally:
            own_redis.resume()
            await client.aclose()

    assert asyncio.run(scenario()) < 3.0  # a try and one retry at 0.5 s each, plus slack
