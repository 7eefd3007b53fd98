"""taskiq + RedisStreamBroker: SIGKILL a worker process mid-item; does another finish it?
Then: redis-server itself SIGKILLed mid-batch and restarted on the same dir (AOF always)."""

import asyncio
import os
import signal
import subprocess
import sys
import tempfile
import time

import redis.asyncio as aredis
import redischild

WORKER = r"""
import asyncio, os, sys, time
from taskiq_redis import RedisStreamBroker
from taskiq.api import run_receiver_task
from taskiq.acks import AcknowledgeType
url = sys.argv[1]
broker = RedisStreamBroker(url, idle_timeout=int(os.environ["IDLE_MS"]), xread_block=200,
                           unacknowledged_lock_timeout=1)
@broker.task(task_name="item")
async def item(n: int) -> None:
    import redis.asyncio as aredis
    r = aredis.from_url(url)
    await r.rpush("started", f"{n}:{os.getpid()}:{time.time():.3f}")
    await asyncio.to_thread(time.sleep, float(os.environ["WORK_S"]))   # the "render", on a thread
    await r.rpush("done", f"{n}:{os.getpid()}")
    await r.aclose()
async def main():
    await broker.startup()
    await run_receiver_task(broker, max_async_tasks=2, ack_time=AcknowledgeType.WHEN_EXECUTED)
asyncio.run(main())
"""


async def wait_for(pred, s):
    deadline = time.monotonic() + s
    while not await pred():
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.02)
    return True


async def main():
    d = tempfile.mkdtemp()
    rp, port = redischild.start(d, aof=True)
    url = f"redis://127.0.0.1:{port}"
    r = aredis.from_url(url)
    env = dict(os.environ, IDLE_MS="5000", WORK_S="1.0")
    from taskiq_redis import RedisStreamBroker

    broker = RedisStreamBroker(url)
    await broker.startup()
    item = broker.register_task(lambda n: None, task_name="item")
    w1 = subprocess.Popen([sys.executable, "-c", WORKER, url], env=env)
    N = 8
    for n in range(N):
        await item.kiq(n)
    assert await wait_for(lambda: _len(r, "started", 2), 30)
    os.kill(w1.pid, signal.SIGKILL)
    w1.wait()
    t_kill = time.monotonic()
    print("worker 1 killed after starting", [x.decode() for x in await r.lrange("started", 0, -1)])
    w2 = subprocess.Popen([sys.executable, "-c", WORKER, url], env=env)
    got = await wait_for(lambda: _len(r, "done", 1), 15)
    print(f"15 s after the kill, with no new message: anything done? {got}")
    await item.kiq(N)
    N += 1  # one new message wakes xreadgroup, and the autoclaim after it
    await wait_for(lambda: _len(r, "done", 4), 60)
    print(f"done after a new message arrived: {await r.llen('done')}")
    # now kill redis itself mid-batch and restart it on the same dir and port
    os.kill(rp.pid, signal.SIGKILL)
    rp.wait()
    t_r = time.monotonic()
    rp, _ = redischild.start(d, port=port, aof=True)
    print(f"redis killed and back in {time.monotonic() - t_r:.2f}s")
    ok = await wait_for(lambda: _distinct_done(r, N), 90)
    done = await r.lrange("done", 0, -1)
    print(
        "all",
        N,
        "done:",
        ok,
        f"{time.monotonic() - t_kill:.1f}s after the worker kill;",
        "runs:",
        len(done),
        "distinct:",
        len({x.split(b":")[0] for x in done}),
    )
    print("started log:", [x.decode().rsplit(":", 1)[0] for x in await r.lrange("started", 0, -1)])
    w2.kill()
    rp.kill()
    await r.aclose()


async def _len(r, k, n):
    try:
        return await r.llen(k) >= n
    except Exception:
        return False


async def _distinct_done(r, n):
    try:
        return len({x.split(b":")[0] for x in await r.lrange("done", 0, -1)}) >= n
    except Exception:
        return False


asyncio.run(main())
