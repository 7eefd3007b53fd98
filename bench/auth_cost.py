"""What API-key auth and the per-key rate limit add to a request: `authenticate` on the real
Runtime (SQLite state in a temp data dir), timed per call, against the admin-token path that
touches no state, alone and with a second process charging the same key at full speed.

    python bench/auth_cost.py    (one JSON line per case)

The target (issue #11) is < 0.5 ms added per request.
"""

from __future__ import annotations

import asyncio
import json
import multiprocessing
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from starlette.requests import Request

from server.app import create_app
from server.auth import authenticate
from server.settings import Settings
from server.state.base import Policy
from server.state.local import SqliteState

TOKEN = "bench-admin-token-0123456789"  # noqa: S105  # a throwaway server of its own
CALLS = 3000


def request(app: Any, headers: dict[str, str]) -> Request:
    raw = [(k.lower().encode(), v.encode()) for k, v in headers.items()]
    scope = {"type": "http", "method": "POST", "path": "/v1/image/resize", "headers": raw,
             "query_string": b"", "app": app, "state": {}}  # fmt: skip
    return Request(scope)


async def timed(app: Any, headers: dict[str, str]) -> tuple[list[float], float]:
    """Wall time per call, and the process's CPU time per call (both threads): on a shared
    machine the tail of the first is mostly waiting for a core, the second is the cost."""
    took = []
    cpu = time.process_time()
    for _ in range(CALLS):
        started = time.perf_counter()
        await authenticate(request(app, headers), "image.process")
        took.append((time.perf_counter() - started) * 1e6)
    return took, (time.process_time() - cpu) / CALLS * 1e6


def rival(path: str, stop: Any) -> None:
    async def run() -> None:
        state = SqliteState(Path(path), 5.0)
        while not stop.is_set():
            await state.charge("rival", Policy(1e9, 10**9, None))
        await state.close()

    asyncio.run(run())


def report(case: str, timing: tuple[list[float], float]) -> None:
    took, cpu_us = sorted(timing[0]), timing[1]
    print(json.dumps({
        "case": case, "calls": len(took), "mean_us": round(statistics.fmean(took), 1),
        "p50_us": round(took[len(took) // 2], 1), "p99_us": round(took[int(len(took) * 0.99)], 1),
        "cpu_us": round(cpu_us, 1),
    }))  # fmt: skip


async def main() -> None:
    data = Path(tempfile.mkdtemp(prefix="imgcdn-auth-bench-"))
    app = create_app(Settings(data_dir=data, admin_tokens=(TOKEN,)))
    async with app.router.lifespan_context(app):
        rt = app.state.runtime
        _, shown = await rt.keys.create({"name": "bench", "rate_per_s": 1e5, "burst": 10**6})
        await timed(app, {"X-API-KEY": shown})  # warm: connection, WAL, caches
        report("admin token (no state)", await timed(app, {"Authorization": f"Bearer {TOKEN}"}))
        report("api key + rate limit", await timed(app, {"X-API-KEY": shown}))
        quota = (await rt.keys.create({"name": "q", "rate_per_s": 1e5, "burst": 10**6,
                                       "daily_quota": 10**9}))[1]  # fmt: skip
        report("api key + rate limit + daily quota", await timed(app, {"X-API-KEY": quota}))
        context = multiprocessing.get_context("spawn")
        stop = context.Event()
        other = context.Process(target=rival, args=(str(data / "state.sqlite3"), stop))
        other.start()
        await asyncio.sleep(1.0)  # the rival is charging
        report("api key, another process charging too", await timed(app, {"X-API-KEY": shown}))
        stop.set()
        other.join()


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
