"""The Redis job queue (server/jobs/redis_broker.py) against a real redis-server: what a
SIGKILLed consumer held is delivered to another without new traffic (the taskiq-redis bug
the subclass fixes), a hung consumer's entry comes back after the idle time, `not_before`
is honoured, a Redis SIGKILL and restart loses no message, and the real taskiq receiver
acks only after the work, leaving nothing in the stream.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import textwrap
import time
import uuid
from collections.abc import AsyncGenerator

import pytest
from taskiq import AckableMessage
from taskiq.api import run_receiver_task
from taskiq.message import BrokerMessage

from server import redisconn
from server.errors import StateUnavailable
from server.jobs.redis_broker import DELAYED, GROUP, STREAM, StreamBroker


def message(data: str, not_before: float | None = None) -> BrokerMessage:
    labels = {} if not_before is None else {"not_before": repr(not_before)}
    return BrokerMessage(
        task_id=uuid.uuid4().hex, task_name="t", message=data.encode(), labels=labels
    )


async def take(listen: AsyncGenerator[AckableMessage, None], seconds: float = 20) -> AckableMessage:
    """The next message, or fail at the deadline."""
    return await asyncio.wait_for(anext(listen), seconds)


async def queue_left(url: str) -> tuple[int, int, int]:
    """(stream length, pending entries, delayed messages)."""
    client = redisconn.connect(url, 2.0)
    try:
        pending = await client.xpending(STREAM, GROUP)
        return await client.xlen(STREAM), pending["pending"], await client.zcard(DELAYED)
    finally:
        await client.aclose()


VICTIM = textwrap.dedent("""
    import asyncio, sys
    from server.jobs.redis_broker import StreamBroker

    async def main():
        broker = StreamBroker(sys.argv[1], "victim", 2, alive_s=1.0, tick_s=0.2)
        await broker.startup()
        got = await anext(broker.listen())
        print(got.data.decode(), flush=True)
        await asyncio.sleep(3600)  # holds it un-acked until SIGKILLed

    asyncio.run(main())
""")


def test_what_a_sigkilled_consumer_held_goes_to_another_without_new_traffic(redis_url):
    async def kick() -> None:
        broker = StreamBroker(redis_url, "kicker", 1)
        await broker.kick(message("item-7"))
        await broker.shutdown()

    asyncio.run(kick())
    args = [sys.executable, "-c", VICTIM, redis_url]
    with subprocess.Popen(args, stdout=subprocess.PIPE, text=True) as victim:
        try:
            assert victim.stdout is not None and victim.stdout.readline().strip() == "item-7"
        finally:
            victim.kill()
            victim.wait()
    killed_at = time.monotonic()

    async def heir() -> float:
        # idle_s far away: only the dead consumer's missing liveness key can hand it over.
        broker = StreamBroker(redis_url, "heir", 2, idle_s=600, tick_s=0.2)
        await broker.startup()
        try:
            got = await take(broker.listen())
            assert got.data == b"item-7"
            took = time.monotonic() - killed_at
            await got.ack()
            return took
        finally:
            await broker.shutdown()

    took = asyncio.run(heir())
    assert took < 1.0 + 5.0  # liveness key 1 s, ticks 0.2 s, slack for a loaded machine
    assert asyncio.run(queue_left(redis_url)) == (0, 0, 0)


def test_an_entry_a_live_consumer_never_acks_comes_back_after_the_idle_time(redis_url):
    async def scenario() -> None:
        hung = StreamBroker(redis_url, "hung", 1, idle_s=600)
        other = StreamBroker(redis_url, "other", 1, idle_s=1.0, tick_s=0.2)
        await hung.startup()
        await other.startup()
        try:
            await hung.kick(message("slow-item"))
            held = await take(hung.listen())  # hung's liveness key stays fresh
            assert held.data == b"slow-item"
            started = time.monotonic()
            again = await take(other.listen())
            assert again.data == b"slow-item" and time.monotonic() - started >= 0.9
            await again.ack()
            await held.ack()  # a late ack of an entry already gone does no harm
        finally:
            await hung.shutdown()
            await other.shutdown()

    asyncio.run(scenario())
    assert asyncio.run(queue_left(redis_url)) == (0, 0, 0)


def test_a_message_waits_for_its_not_before_label(redis_url):
    async def scenario() -> None:
        broker = StreamBroker(redis_url, "c", 2, tick_s=0.2)
        await broker.startup()
        try:
            not_before = time.time() + 1.5
            await broker.kick(message("later", not_before))
            await broker.kick(message("now"))
            await broker.kick(message("past", time.time() - 5))  # due already: straight in
            listen = broker.listen()
            first, second = await take(listen), await take(listen)
            assert {first.data, second.data} == {b"now", b"past"}
            third = await take(listen)
            assert third.data == b"later" and time.time() >= not_before
            for got in (first, second, third):
                await got.ack()
        finally:
            await broker.shutdown()

    asyncio.run(scenario())
    assert asyncio.run(queue_left(redis_url)) == (0, 0, 0)


def test_a_redis_sigkill_and_restart_loses_no_message(own_redis):
    url = own_redis.url

    async def scenario() -> list[bytes]:
        # idle_s far away: nothing is handed out twice here; what comes back after the
        # restart is what was queued, and an ack Redis refused is retried by the ticker.
        broker = StreamBroker(url, "c", 4, idle_s=600, tick_s=0.2, timeout_s=0.5)
        await broker.startup()
        try:
            for i in range(10):
                await broker.kick(message(f"m{i}"))
            await broker.kick(message("delayed", time.time() + 1.0))
            listen = broker.listen()
            delivered = [(await take(listen)) for _ in range(4)]
            for got in delivered[:3]:
                await got.ack()
            own_redis.kill()
            with pytest.raises(StateUnavailable):
                await broker.kick(message("refused"))
            await delivered[3].ack()  # refused: Redis is down
            own_redis.start()
            while len(delivered) < 11:
                got = await take(listen)
                await got.ack()
                delivered.append(got)
            return [got.data for got in delivered]
        finally:
            await broker.shutdown()

    delivered = asyncio.run(scenario())
    assert sorted(delivered) == sorted([f"m{i}".encode() for i in range(10)] + [b"delayed"])
    assert asyncio.run(queue_left(url)) == (0, 0, 0)


def test_the_taskiq_receiver_runs_every_task_and_acks_after_the_work(redis_url):
    async def scenario() -> list[int]:
        broker = StreamBroker(redis_url, "receiver", 2, tick_s=0.2)
        ran: list[int] = []
        left_while_running: list[int] = []

        @broker.task(task_name="imgcdn.test.work")
        async def work(n: int) -> None:
            # Not acked yet while it runs: the entry is still in the stream.
            left_while_running.append(int(await broker.depth() > 0))
            ran.append(n)

        await broker.startup()
        receiver = asyncio.create_task(run_receiver_task(broker, max_async_tasks=2))
        try:
            for n in range(5):
                await work.kiq(n)
            await work.kicker().with_labels(not_before=time.time() + 0.5).kiq(99)
            deadline = time.monotonic() + 20
            while len(ran) < 6 or await broker.depth():
                assert time.monotonic() < deadline, (ran, await broker.depth())
                await asyncio.sleep(0.02)  # polling the receiver, with a deadline
            assert left_while_running == [1] * 6
            return sorted(ran)
        finally:
            receiver.cancel()
            await asyncio.gather(receiver, return_exceptions=True)
            await broker.shutdown()

    assert asyncio.run(scenario()) == [0, 1, 2, 3, 4, 99]
    assert asyncio.run(queue_left(redis_url)) == (0, 0, 0)
