"""Redis SIGKILLed mid-write with appendonly yes + appendfsync always: is every acknowledged write there
after a restart on the same dir? And SIGSTOP: what does a client with a timeout see?"""

import os
import signal
import tempfile
import threading
import time

import redis
import redischild

for fsync in ("always", "everysec"):
    d = tempfile.mkdtemp()
    p, port = redischild.start(d, aof=True)
    if fsync != "always":
        redis.Redis(port=port).config_set("appendfsync", fsync)
    r = redis.Redis(port=port, socket_timeout=1)
    acked = 0
    t0 = time.perf_counter()

    def killer():
        time.sleep(0.5)
        os.kill(p.pid, signal.SIGKILL)

    threading.Thread(target=killer).start()
    try:
        while True:
            r.xadd("s", {"i": acked})
            acked += 1
    except redis.ConnectionError:
        pass
    rate = acked / (time.perf_counter() - t0)
    p.wait()
    p, _ = redischild.start(d, port=port, aof=True)
    n = redis.Redis(port=port).xlen("s")
    print(
        f"appendfsync {fsync}: {acked} XADDs acknowledged ({rate:.0f}/s, 1 client), {n} in the stream after restart"
    )
    p.kill()
    p.wait()
# SIGSTOP: a paused Redis
d = tempfile.mkdtemp()
p, port = redischild.start(d)
r = redis.Redis(port=port, socket_timeout=0.5, socket_connect_timeout=0.5)
os.kill(p.pid, signal.SIGSTOP)
t = time.perf_counter()
try:
    r.ping()
except Exception as e:
    print(f"SIGSTOPped redis: {type(e).__name__} after {time.perf_counter() - t:.2f}s")
os.kill(p.pid, signal.SIGCONT)
r2 = redis.Redis(port=port, socket_timeout=0.5)
print("after SIGCONT ping:", r2.ping())
p.kill()
