"""pyrate-limiter GCRA on Redis (RedisStateStore, its Lua) + a UTC-day quota counter, 4 processes at once.
Rate: 2/s burst 50 (so ~50 admitted in the ~1 s run); quota 40/day in a second run."""

import multiprocessing as mp
import tempfile
import time

import redis
import redischild
from pyrate_limiter import Duration, Rate, RateItem, StateBucket, TokenBucket
from pyrate_limiter.buckets.redis_state import RedisStateStore

QUOTA_LUA = """
local used = redis.call('INCRBY', KEYS[1], ARGV[1])
if used == tonumber(ARGV[1]) then redis.call('EXPIREAT', KEYS[1], ARGV[3]) end
if used > tonumber(ARGV[2]) then redis.call('DECRBY', KEYS[1], ARGV[1]) return -1 end
return used"""


def worker(port, n, quota, barrier, out):
    r = redis.Redis(port=port)
    rate = Rate(2000, 1000 * Duration.SECOND, 50)  # 2/s as imgcdn's rate_of() builds it, burst 50
    bucket = StateBucket([rate], TokenBucket(), RedisStateStore(r, "rl:key1"))
    reserve = r.register_script(QUOTA_LUA)
    ok = 0
    lat = []
    barrier.wait()
    for _ in range(n):
        t = time.perf_counter()
        day = int(time.time() // 86400)
        if quota:  # quota first (reserve), then rate; a rate refusal gives the reservation back
            if reserve(keys=[f"q:key1:{day}"], args=[1, quota, (day + 1) * 86400]) < 0:
                lat.append(time.perf_counter() - t)
                continue
        allowed = bucket.put(RateItem("key1", int(time.time() * 1000), 1))
        if not allowed and quota:
            r.decrby(f"q:key1:{day}", 1)
        ok += bool(allowed)
        lat.append(time.perf_counter() - t)
    lat.sort()
    out.put((ok, lat[len(lat) // 2] * 1e6))


if __name__ == "__main__":
    p, port = redischild.start(tempfile.mkdtemp())
    for quota in (0, 40):
        redis.Redis(port=port).flushall()
        ctx = mp.get_context("spawn")
        b = ctx.Barrier(4)
        q = ctx.Queue()
        ps = [ctx.Process(target=worker, args=(port, 500, quota, b, q)) for _ in range(4)]
        t0 = time.time()
        [x.start() for x in ps]
        res = [q.get() for _ in ps]
        [x.join() for x in ps]
        print(
            f"quota={quota or 'none'}: admitted {sum(a for a, _ in res)} of 2000 "
            f"(per process {[a for a, _ in res]}), median {sum(m for _, m in res) / 4:.0f} us/charge, "
            f"redis quota counter {redis.Redis(port=port).get(f'q:key1:{int(time.time() // 86400)}')}"
        )
    p.kill()
