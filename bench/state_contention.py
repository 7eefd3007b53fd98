"""Contention on the shared state (rate limits, quotas, idempotency): two processes, eight
callers each, charging as fast as they can for 6 s. Prints calls/s and the latency of a
charge (p50, p99, max) and the errors (503s). The max is what a keyed request can wait.
SQLite in a temporary data dir, or the Redis at the URL given (it must be a scratch one).

    .venv/bin/python bench/state_contention.py [redis://127.0.0.1:6379/0]
"""

from __future__ import annotations

import asyncio
import multiprocessing as mp
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from server import redisconn
from server.errors import StateUnavailable
from server.state.base import Policy, StateStore
from server.state.local import SqliteState
from server.state.redis import RedisState

POLICY = Policy(1e6, 10**7, None)  # never refuses: every call is a full charge


def one(path: str, barrier: Any, seconds: float) -> tuple[list[float], int]:
    async def run() -> tuple[list[float], int]:
        redis = redisconn.connect(path, 2.0) if path.startswith("redis") else None
        state: StateStore = RedisState(redis, 2.0) if redis else SqliteState(Path(path), 2.0)
        await state.charge("warm", POLICY)
        barrier.wait()
        latencies: list[float] = []
        errors = 0
        end = time.monotonic() + seconds

        async def caller(k: int) -> None:
            nonlocal errors
            while time.monotonic() < end:
                started = time.perf_counter()
                try:
                    await state.charge(f"key{k % 3}", POLICY)
                except StateUnavailable:
                    errors += 1
                latencies.append(time.perf_counter() - started)

        await asyncio.gather(*(caller(k) for k in range(8)))
        await state.close()
        if redis is not None:
            await redis.aclose()
        return latencies, errors

    return asyncio.run(run())


def main(seconds: float = 6.0) -> None:
    context = mp.get_context("spawn")
    barrier = context.Manager().Barrier(2)
    path = sys.argv[1] if len(sys.argv) > 1 else tempfile.mkdtemp() + "/state.sqlite3"
    with context.Pool(2) as pool:
        results = pool.starmap(one, [(path, barrier, seconds)] * 2)
    ms = sorted(x * 1000 for r in results for x in r[0])
    errors = sum(r[1] for r in results)

    def q(p: float) -> float:
        return round(ms[int(p * (len(ms) - 1))], 2)

    print(
        f"{len(ms) / seconds:.0f} charges/s; p50 {q(0.5)} ms, p99 {q(0.99)} ms, "
        f"max {ms[-1]:.1f} ms; errors {errors}"
    )


if __name__ == "__main__":
    main()
