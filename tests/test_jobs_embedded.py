"""The embedded job store and queue (jobs.sqlite3) under several real processes: a job
ends exactly once however many finish items at once, and a message claimed by a process
that is SIGKILLed goes to another receiver at once, not after its lease."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from taskiq import BrokerMessage

from server.jobs.model import ItemOutcome, NewJob
from server.jobs.sqlite_broker import SqliteBroker
from server.jobs.sqlite_store import SqliteJobs

ROOT = Path(__file__).parent.parent
FINISHER = """
import asyncio, sys
from pathlib import Path
from server.jobs.model import ItemOutcome
from server.jobs.sqlite_store import SqliteJobs

async def main():
    store = SqliteJobs(Path(sys.argv[1]), 10.0)
    sys.stdout.write("ready\\n"); sys.stdout.flush()
    sys.stdin.readline()  # all start together
    outcome = ItemOutcome("succeeded", result={"bytes": 1})
    ended = await asyncio.gather(*(store.finish_item("job_1", i, outcome) for i in range(40)))
    print(sum(ended))
    await store.close()

asyncio.run(main())
"""
CLAIMER = """
import asyncio, sys, time
from pathlib import Path
from server.jobs.sqlite_broker import SqliteBroker

async def main():
    broker = SqliteBroker(Path(sys.argv[1]), lease_s=3600)
    async for message in broker.listen():
        print("claimed", flush=True)
        await asyncio.sleep(3600)  # holds it, never acks: killed here

asyncio.run(main())
"""


def message(task_id: str, not_before: float | None = None) -> BrokerMessage:
    labels = {} if not_before is None else {"not_before": not_before}
    return BrokerMessage(task_id=task_id, task_name="t", message=task_id.encode(), labels=labels)


def python(script: str, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(script), *args],
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )


def test_a_job_ends_exactly_once_when_four_processes_finish_every_item_at_once(
    tmp_path: Path,
) -> None:
    path = tmp_path / "jobs.sqlite3"

    async def create() -> None:
        store = SqliteJobs(path, 10.0)
        items = tuple({"n": i} for i in range(40))
        await store.create(NewJob("job_1", "k", "batch", items, time.time()))
        await store.close()

    asyncio.run(create())
    workers = [python(FINISHER, str(path)) for _ in range(4)]
    for worker in workers:
        assert worker.stdout is not None and worker.stdout.readline().strip() == "ready"
    for worker in workers:
        assert worker.stdin is not None
        worker.stdin.write("go\n")
        worker.stdin.flush()
    ends = [int(worker.communicate(timeout=60)[0].strip()) for worker in workers]
    assert sum(ends) == 1

    async def read() -> None:
        store = SqliteJobs(path, 10.0)
        job = await store.get("job_1", None)
        assert job is not None
        assert (job.status, job.done, job.failed, job.count) == ("completed", 40, 0, 40)
        assert job.finished_at is not None
        # A re-run of an ended item changes nothing.
        assert not await store.finish_item("job_1", 3, ItemOutcome("failed", error={}))
        again = await store.get("job_1", None)
        assert again is not None and (again.done, again.failed) == (40, 0)
        await store.close()

    asyncio.run(read())


async def first(broker: SqliteBroker, seconds: float) -> tuple[bytes, float]:
    async def take() -> tuple[bytes, float]:
        async for delivered in broker.listen():
            assert not isinstance(delivered, bytes)
            await delivered.ack()  # type: ignore[misc]
            return delivered.data, time.time()
        raise AssertionError("the listener stopped")

    return await asyncio.wait_for(take(), seconds)


def queue_one(path: Path) -> None:
    """Queue the message "m1" in the broker at `path`."""

    async def kick() -> None:
        broker = SqliteBroker(path, lease_s=3600)
        await broker.kick(message("m1"))
        await broker.shutdown()

    asyncio.run(kick())


def test_a_message_held_by_a_sigkilled_receiver_goes_to_another_without_its_lease(
    tmp_path: Path,
) -> None:
    path = tmp_path / "jobs.sqlite3"

    queue_one(path)
    with python(CLAIMER, str(path)) as holder:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "claimed"
        os.kill(holder.pid, signal.SIGKILL)
        holder.wait(timeout=10)

    async def take_over() -> None:
        broker = SqliteBroker(path, lease_s=3600)
        data, _ = await first(broker, 10)  # the lease is an hour: only takeover is this fast
        assert data == b"m1"
        assert await broker.depth() == 0
        await broker.shutdown()

    asyncio.run(take_over())


def test_a_live_receivers_claim_is_not_taken_over(tmp_path: Path) -> None:
    path = tmp_path / "jobs.sqlite3"

    queue_one(path)
    with python(CLAIMER, str(path)) as holder:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "claimed"

        async def look() -> None:
            broker = SqliteBroker(path, lease_s=3600)
            try:
                await first(broker, 1.5)
            except TimeoutError:
                pass
            else:
                raise AssertionError("a live owner's message was delivered twice")
            await broker.shutdown()

        asyncio.run(look())
        holder.kill()


def test_a_message_is_not_delivered_before_its_not_before_label(tmp_path: Path) -> None:
    async def run() -> None:
        broker = SqliteBroker(tmp_path / "jobs.sqlite3", lease_s=60)
        due = time.time() + 0.6
        await broker.kick(message("later", not_before=due))
        await broker.kick(message("now"))
        assert (await first(broker, 5))[0] == b"now"
        data, at = await first(broker, 5)
        assert (data, at >= due) == (b"later", True)
        await broker.shutdown()

    asyncio.run(run())


def test_a_graceful_shutdown_hands_back_what_it_claimed(tmp_path: Path) -> None:
    async def run() -> None:
        path = tmp_path / "jobs.sqlite3"
        one = SqliteBroker(path, lease_s=3600)
        await one.kick(message("m1"))
        listening = one.listen()
        delivered = await anext(listening)
        assert not isinstance(delivered, bytes) and delivered.data == b"m1"
        await listening.aclose()
        await one.shutdown()  # not acked: handed back
        two = SqliteBroker(path, lease_s=3600)
        assert (await first(two, 2))[0] == b"m1"
        await two.shutdown()

    asyncio.run(run())


def test_the_sweep_drops_jobs_ended_longer_ago_than_the_keep_and_nothing_else(
    tmp_path: Path,
) -> None:
    async def run() -> None:
        store = SqliteJobs(tmp_path / "jobs.sqlite3", 10.0)
        now = time.time()
        for job_id in ("job_old", "job_open"):
            await store.create(NewJob(job_id, "k", "batch", ({"n": 0},), now))
        await store.finish_item("job_old", 0, ItemOutcome("succeeded", result={}))
        assert await store.sweep(now + 100, keep_s=3600) == 0
        assert await store.sweep(now + 3601, keep_s=3600) == 1
        assert await store.get("job_old", None) is None
        assert await store.get("job_open", None) is not None  # not ended: kept
        assert await store.counts() == {"pending": 1}
        await store.close()

    asyncio.run(run())


def test_a_task_that_meets_the_store_down_is_left_unacked_with_one_warning_line(settings, caplog):
    """The broker hands the message out again (the lease, a dead consumer's claim); taskiq
    would log a traceback for the exception, as if something were broken."""
    from types import SimpleNamespace

    from server.errors import StateUnavailable
    from server.jobs.engine import Engine

    async def scenario() -> list[str]:
        engine = Engine.build(settings, None)

        async def down(*args: object) -> None:
            raise StateUnavailable("jobs: start_item failed: ConnectionError")

        engine.store.start_item = down  # type: ignore[method-assign]
        acked: list[str] = []

        async def ack() -> None:
            acked.append("ack")

        context = SimpleNamespace(message=SimpleNamespace(labels={}), ack=ack)
        await engine.run_item_task.original_func("job_1", 0, context)
        await engine.store.close()
        return acked

    settings.data_dir.mkdir(parents=True)
    with caplog.at_level("WARNING", logger="imgcdn"):
        acked = asyncio.run(scenario())

    assert acked == []  # not acked: the message runs again
    assert [r.getMessage() for r in caplog.records] == [
        "jobs: item job_1 left for redelivery: jobs: start_item failed: ConnectionError"
    ]
    assert not any(r.exc_info for r in caplog.records)
