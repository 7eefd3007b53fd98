"""saq: SIGKILL a worker mid-job; does another worker finish it (heartbeat + sweep)?"""

import asyncio
import os
import signal
import subprocess
import sys
import tempfile
import time

import redischild
from saq import Job, Queue

WORKER = r"""
import asyncio, os, sys, time, logging
logging.basicConfig(level=logging.INFO, format='W%(process)d %(message)s')
from saq import Queue, Worker
async def item(ctx, *, n):
    r = ctx["job"].queue.redis
    await r.rpush("started", f"{n}:{os.getpid()}")
    # a "render": blocking work on a thread, heartbeating meanwhile
    job = ctx["job"]
    for _ in range(int(float(os.environ.get("WORK_S","1"))/0.2)):
        await asyncio.to_thread(time.sleep, 0.2)
        await job.update()            # heartbeat: touched = now
    await r.rpush("done", f"{n}:{os.getpid()}")
    return n
async def main():
    from saq.queue.redis import RedisQueue
    class Q(RedisQueue):
        async def sweep(self, lock=1, abort=5.0):   # the lock is how often ANY worker may sweep
            return await super().sweep(lock=lock, abort=abort)
    q = Q.from_url(sys.argv[1])
    w = Worker(q, functions=[item], concurrency=2, timers={"sweep": 1, "schedule": 1})
    await w.start()
asyncio.run(main())
"""


async def main():
    d = tempfile.mkdtemp()
    rp, port = redischild.start(d)
    url = f"redis://127.0.0.1:{port}"
    q = Queue.from_url(url)
    await q.connect()
    env = dict(os.environ, WORK_S="1.0")
    w1 = subprocess.Popen([sys.executable, "-c", WORKER, url], env=env)
    N = 6
    t0 = time.monotonic()
    for n in range(N):
        await q.enqueue(
            Job("item", kwargs={"n": n}, key=f"item-{n}", heartbeat=3, retries=5, timeout=60)
        )
    # wait until w1 started 2 items, then kill -9 it
    while await q.redis.llen("started") < 2:
        await asyncio.sleep(0.02)
    os.kill(w1.pid, signal.SIGKILL)
    w1.wait()
    killed_at = time.monotonic()
    print(
        "killed worker 1 with",
        await q.redis.lrange("started", 0, -1),
        "started,",
        await q.redis.lrange("done", 0, -1),
        "done",
    )
    print(
        "active list:",
        await q.redis.lrange("saq:default:active", 0, -1),
        "keys:",
        sorted(await q.redis.keys("saq:*")),
    )
    w2 = subprocess.Popen([sys.executable, "-c", WORKER, url], env=env)
    deadline = time.monotonic() + 60
    while (
        len(set(x.split(b":")[0] for x in await q.redis.lrange("done", 0, -1))) < N
        and time.monotonic() < deadline
    ):
        await asyncio.sleep(0.05)
    done = await q.redis.lrange("done", 0, -1)
    print(
        "done:",
        sorted(set(int(x.split(b":")[0]) for x in done)),
        f"all done {time.monotonic() - killed_at:.1f}s after the kill",
    )
    print("started log:", [x.decode() for x in await q.redis.lrange("started", 0, -1)])
    for n in range(N):
        j = await q.job(f"item-{n}")
        print(n, j.status, "attempts", j.attempts, "error", (j.error or "")[:40])
    w2.kill()
    rp.kill()


asyncio.run(main())
