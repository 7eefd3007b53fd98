"""Load drivers and what a run measures on the server side.

- `wrk_run`: wrk (closed loop, C connections) over a list of paths, for throughput.
- `open_loop`: requests sent at a fixed rate by asyncio + aiohttp, whatever the answers'
  speed, so a slow answer shows in p99 instead of slowing the sender down (wrk's closed
  loop hides that: coordinated omission). For latency at a given load.
- `burst`: N requests at once, for the stampede.
- `mixed`: a fixed list of requests of several kinds, each with its own headers, counting
  each kind's statuses: the soak.
- `Watch`: the server's CPU per request and peak RSS over a run (its whole process tree),
  and the CPU everything else on the machine took meanwhile (the noise figure).
"""

from __future__ import annotations

import asyncio
import json
import os
import resource
import subprocess
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import procstat

HERE = Path(__file__).resolve().parent


@dataclass
class Watch:
    """Server-side figures over one run: start() before the load, stop() after it."""

    pid: int | None
    pids: list[int] = field(default_factory=list)
    _cpu0: dict[int, float] = field(default_factory=dict)
    _busy0: float = 0.0
    _mine0: float = 0.0
    _t0: float = 0.0
    _sampled_peak: int = 0
    _sampling: threading.Event = field(default_factory=threading.Event)
    _sampler: threading.Thread | None = None

    def start(self) -> None:
        self.pids = procstat.family(self.pid) if self.pid else []
        procstat.reset_peaks(self.pids)
        self._cpu0 = {p: procstat.cpu_seconds(p) for p in self.pids}
        self._busy0, self._mine0, self._t0 = (
            procstat.machine_busy_seconds(),
            _own_cpu(),
            time.time(),
        )
        self._sampling.clear()
        self._sampler = threading.Thread(target=self._sample, daemon=True)
        self._sampler.start()

    def _sample(self) -> None:
        # VmHWM is the kernel's exact peak per process; the sampled sum shows the peak of
        # all processes together, which VmHWM cannot (their peaks need not coincide).
        while not self._sampling.wait(0.1):
            total = sum(procstat.status_kb(p, "VmRSS") for p in self.pids)
            self._sampled_peak = max(self._sampled_peak, total)

    def stop(self, requests: int) -> dict[str, Any]:
        self._sampling.set()
        if self._sampler:
            self._sampler.join()
        wall = time.time() - self._t0
        server = {p: procstat.cpu_seconds(p) - c for p, c in self._cpu0.items()}
        total = sum(server.values())
        other = procstat.machine_busy_seconds() - self._busy0 - total - (_own_cpu() - self._mine0)
        out: dict[str, Any] = {"other_cpu_pct": round(100 * other / wall)}
        if self.pids:
            peaks = [procstat.status_kb(p, "VmHWM") / 1024 for p in self.pids]
            out.update(
                cpu_ms_per_req=round(1000 * total / max(requests, 1), 2),
                server_cpu_pct=round(100 * total / wall),
                proc_cpu_pct=sorted((round(100 * c / wall) for c in server.values()), reverse=True),
                peak_rss_mb_per_proc=round(max(peaks), 1),
                peak_rss_mb_total=round(max(sum(peaks), self._sampled_peak / 1024), 1),
            )
        return out


def _own_cpu() -> float:
    """CPU of this process and its finished children (wrk): not the server's, not noise."""
    me = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def wrk_run(
    base: str,
    paths: list[str],
    connections: int,
    seconds: float,
    pid: int | None = None,
    header: str = "",
    threads: int = 2,
) -> dict[str, Any]:
    threads = max(1, min(threads, connections))
    with tempfile.NamedTemporaryFile("w", suffix=".paths", delete=False) as listing:
        listing.write("\n".join(paths) + "\n")
    env = dict(
        os.environ, BENCH_PATHS=listing.name, BENCH_THREADS=str(threads), BENCH_HEADER=header
    )
    cmd = [
        "wrk",
        "-t",
        str(threads),
        "-c",
        str(connections),
        "-d",
        f"{seconds:g}s",
        "--timeout",
        "60s",
        "-s",
        str(HERE / "urls.lua"),
        base,
    ]
    watch = Watch(pid)
    watch.start()
    try:
        done = subprocess.run(  # noqa: S603 - our own command line
            cmd, env=env, capture_output=True, text=True, timeout=seconds + 120, check=False
        )
    finally:
        os.unlink(listing.name)
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if not lines:
        raise RuntimeError(f"wrk gave no result: {done.stdout}{done.stderr}")
    result: dict[str, Any] = json.loads(lines[-1])
    result.update(watch.stop(result["requests"]))
    result["rps"] = round(result["requests"] / result["seconds"], 1)
    result["connections"] = connections
    return result


async def _open_loop(
    base: str, paths: list[str], rate: float, seconds: float, header: str
) -> dict[str, Any]:
    headers = dict([header.split(": ", 1)]) if header else {}
    latencies: list[float] = []
    errors = 0
    connector = aiohttp.TCPConnector(limit=0)
    timeout = aiohttp.ClientTimeout(total=60)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:

        async def one(path: str, due: float) -> None:
            nonlocal errors
            try:
                async with session.get(base + path, headers=headers) as response:
                    await response.read()
                    if response.status >= 400:
                        errors += 1
            except (aiohttp.ClientError, TimeoutError):
                errors += 1
            # From when it was due, not when it went out: a late sender counts against us.
            latencies.append(time.perf_counter() - due)

        start = time.perf_counter()
        total = int(rate * seconds)
        tasks = []
        for i in range(total):
            due = start + i / rate
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(paths[i % len(paths)], due)))
        await asyncio.gather(*tasks)
        elapsed = time.perf_counter() - start
    latencies.sort()

    def pct(p: float) -> float:
        return round(1000 * latencies[min(len(latencies) - 1, int(p * len(latencies)))], 2)

    return {
        "requests": total,
        "seconds": round(elapsed, 3),
        "rate": rate,
        "p50_ms": pct(0.50),
        "p99_ms": pct(0.99),
        "max_ms": pct(1.0),
        "errors": errors,
        "paths": len(paths),
        "wrapped": total > len(paths),
    }


def open_loop(
    base: str,
    paths: list[str],
    rate: float,
    seconds: float,
    pid: int | None = None,
    header: str = "",
) -> dict[str, Any]:
    watch = Watch(pid)
    watch.start()
    result = asyncio.run(_open_loop(base, paths, rate, seconds, header))
    result.update(watch.stop(result["requests"]))
    result["rps"] = round(result["requests"] / result["seconds"], 1)
    return result


async def _burst(url: str, count: int) -> list[int]:
    connector = aiohttp.TCPConnector(limit=0, force_close=True)
    async with aiohttp.ClientSession(
        connector=connector, timeout=aiohttp.ClientTimeout(total=120)
    ) as session:

        async def one() -> int:
            async with session.get(url) as response:
                await response.read()
                return response.status

        return list(await asyncio.gather(*(one() for _ in range(count))))


def burst(url: str, count: int) -> list[int]:
    """`count` requests for one URL, all sent at once; their statuses."""
    return asyncio.run(_burst(url, count))


async def _fixed_count(base: str, paths: list[str], concurrency: int) -> int:
    connector = aiohttp.TCPConnector(limit=concurrency)
    errors = 0
    queue = iter(paths)
    async with aiohttp.ClientSession(
        connector=connector, timeout=aiohttp.ClientTimeout(total=120)
    ) as session:

        async def worker() -> None:
            nonlocal errors
            for path in queue:
                try:
                    async with session.get(base + path) as response:
                        await response.read()
                        errors += response.status != 200
                except (aiohttp.ClientError, TimeoutError):
                    errors += 1

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return errors


def fixed_count(base: str, paths: list[str], concurrency: int) -> int:
    """Every path once, `concurrency` at a time; how many failed."""
    return asyncio.run(_fixed_count(base, paths, concurrency))


async def _mixed(
    base: str, requests: list[tuple[str, str, dict[str, str]]], concurrency: int
) -> dict[str, Counter[str]]:
    connector = aiohttp.TCPConnector(limit=concurrency)
    outcomes: Counter[str] = Counter()
    caches: Counter[str] = Counter()
    queue = iter(requests)
    async with aiohttp.ClientSession(
        connector=connector, timeout=aiohttp.ClientTimeout(total=120)
    ) as session:

        async def worker() -> None:
            for kind, path, headers in queue:
                try:
                    async with session.get(base + path, headers=headers) as response:
                        await response.read()
                        outcomes[f"{kind} {response.status}"] += 1
                        caches[response.headers.get("X-Cache", "none")] += 1
                except (aiohttp.ClientError, TimeoutError):
                    outcomes[f"{kind} failed"] += 1

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return {"outcomes": outcomes, "x_cache": caches}


def mixed(
    base: str, requests: list[tuple[str, str, dict[str, str]]], concurrency: int
) -> dict[str, Counter[str]]:
    """Every (kind, path, headers) once, `concurrency` at a time. Counts "<kind> <status>"
    (or "<kind> failed" when no answer came), and the answers' X-Cache values."""
    return asyncio.run(_mixed(base, requests, concurrency))
