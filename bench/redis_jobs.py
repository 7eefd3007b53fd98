"""What jobs on Redis cost, against a redis-server child (tests/redisproc.py, AOF fsynced on
every write, as the tests run it): RedisJobs' calls (µs per call, p50/p99, one client),
and the StreamBroker's queue overhead on an idle receiver (kick to delivery, ms).

    .venv/bin/python bench/redis_jobs.py
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent.parent / "tests"))
from redisproc import RedisProcess  # the tests' redis-server child
from taskiq.message import BrokerMessage

from server import redisconn
from server.jobs.model import ItemOutcome, NewJob
from server.jobs.redis_broker import StreamBroker
from server.jobs.redis_store import RedisJobs

ITEM = {"image": {"url": "https://img.example/a.jpg"}, "ops": [{"op": "resize",
        "params": {"width": 800}}], "output": {"format": "jpeg"}}  # fmt: skip
OK = ItemOutcome("succeeded", result={"image_url": "https://cdn.example/r/x.jpg",
                 "mime": "image/jpeg", "width": 800, "height": 533, "bytes": 51234})  # fmt: skip


def line(name: str, samples: list[float], unit: str, scale: float) -> None:
    q = statistics.quantiles(samples, n=100)
    print(f"{name:<34} p50 {q[49] * scale:8.1f} {unit}   p99 {q[98] * scale:8.1f} {unit}")


async def timed(n: int, call: Callable[[int], Awaitable[Any]]) -> list[float]:
    out = []
    for i in range(n):
        started = time.perf_counter()
        await call(i)
        out.append(time.perf_counter() - started)
    return out


async def store(url: str) -> None:
    client = redisconn.connect(url, 2.0)
    jobs = RedisJobs(client)
    items = (ITEM,) * 1000

    def job(i: int, n: int) -> NewJob:
        return NewJob(f"b{n}-{i}", "key", "batch", items[:n], time.time())

    line("create (1 item)", await timed(300, lambda i: jobs.create(job(i, 1))), "us", 1e6)
    line("create (1000 items)", await timed(30, lambda i: jobs.create(job(i, 1000))), "us", 1e6)
    big = "b1000-0"
    line("start_item", await timed(1000, lambda i: jobs.start_item(big, i)), "us", 1e6)
    line("finish_item", await timed(1000, lambda i: jobs.finish_item(big, i, OK)), "us", 1e6)
    line("get (1000 items)", await timed(100, lambda i: jobs.get(big, "key")), "us", 1e6)
    line("cancel (1000 pending)", await timed(29, lambda i: jobs.cancel(f"b1000-{i + 1}", None)),
         "us", 1e6)  # fmt: skip
    await client.aclose()


async def queue(url: str) -> None:
    broker = StreamBroker(url, "bench", 4)
    await broker.startup()
    listen = broker.listen()
    latencies = []
    for i in range(300):
        started = time.perf_counter()
        await broker.kick(BrokerMessage(task_id=str(i), task_name="t", message=b"x", labels={}))
        got = await anext(listen)
        latencies.append(time.perf_counter() - started)
        await got.ack()
    line("kick -> delivered (idle receiver)", latencies, "ms", 1e3)
    await broker.shutdown()


def main() -> None:
    with tempfile.TemporaryDirectory() as folder:
        redis = RedisProcess(Path(folder))
        redis.start()
        try:
            asyncio.run(store(redis.url))
            asyncio.run(queue(redis.url))
        finally:
            redis.stop()


if __name__ == "__main__":
    main()
