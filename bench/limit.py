"""The in-process libvips limit: renders/s for one job with libvips alone, no HTTP, no
Python server, all cores busy. Every cold figure of the benchmark is divided by the limit
of the same job measured in the same run.

    python bench/limit.py JOB [JOB ...] [--seconds 4]    (one JSON line per job)

The job is done the way the fastest peers do it (sharp's fastShrinkOnLoad, thumbor's PIL
draft): the JPEG is decoded shrunk by the largest of 2, 4, 8 that keeps at least the target
width (`quality` rule: at least twice it, as vips_thumbnail), then Lanczos3 to the target,
then saved with libvips' defaults at the job's quality. The source is read from its file
each time (the page cache holds it, as it would for a server); libvips' operation cache is
off, so nothing is reused between renders. Two layouts are tried, N and 2N Python threads
(N = cores) with one libvips thread each, and the faster is reported.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pyvips

CORPUS = Path(__file__).resolve().parent / "corpus"


@dataclass(frozen=True)
class Job:
    photo: str
    width: int
    fmt: str
    quality: int
    rule: str = "fast"
    effort: int = 0  # AVIF only

    def render(self) -> int:
        path = str(CORPUS / self.photo)
        stored = pyvips.Image.new_from_file(path).width  # header only
        margin = 2 if self.rule == "quality" else 1
        shrink = max(s for s in (1, 2, 4, 8) if stored // s >= self.width * margin)
        image = pyvips.Image.new_from_file(path, shrink=shrink, access="sequential")
        image = image.resize(self.width / image.width, kernel="lanczos3")
        if self.fmt == "jpeg":
            return len(image.jpegsave_buffer(Q=self.quality))
        if self.fmt == "webp":
            return len(image.webpsave_buffer(Q=self.quality))
        return len(image.heifsave_buffer(Q=self.quality, compression="av1", effort=self.effort))


# The server's default AVIF settings (IMGCDN_AVIF_EFFORT=0, q 55), so the AVIF limit is
# the same work as the server's AVIF run.
JOBS = {
    "jpeg-800": Job("photo-12mp.jpg", 800, "jpeg", 80),
    "webp-800": Job("photo-12mp.jpg", 800, "webp", 80),
    "avif-800": Job("photo-12mp.jpg", 800, "avif", 55),
    "jpeg-1600-24mp": Job("photo-24mp.jpg", 1600, "jpeg", 80),
    "jpeg-800-2mp": Job("photo-2mp.jpg", 800, "jpeg", 80),
    "jpeg-800-24mp": Job("photo-24mp.jpg", 800, "jpeg", 80),
    "jpeg-800-quality": Job("photo-12mp.jpg", 800, "jpeg", 80, rule="quality"),
    "webp-800-quality": Job("photo-12mp.jpg", 800, "webp", 80, rule="quality"),
}


def _cpu() -> float:
    used = resource.getrusage(resource.RUSAGE_SELF)
    return used.ru_utime + used.ru_stime


def throughput(render: Callable[[], int], threads: int, seconds: float) -> dict[str, float]:
    for _ in range(threads):  # warm-up: page cache, codec set-up
        render()
    done = [0] * threads
    sizes = [0] * threads
    stop = time.perf_counter() + seconds

    def loop(k: int) -> None:
        while time.perf_counter() < stop:
            sizes[k] = render()
            done[k] += 1

    cpu0, t0 = _cpu(), time.perf_counter()
    workers = [threading.Thread(target=loop, args=(k,)) for k in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    elapsed = time.perf_counter() - t0  # includes the renders that crossed the deadline
    count = sum(done)
    return {
        "rps": round(count / elapsed, 2),
        "cpu_ms_per_req": round(1000 * (_cpu() - cpu0) / max(count, 1), 1),
        "out_kb": round(max(sizes) / 1024, 1),
        "threads": threads,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("jobs", nargs="+", choices=sorted(JOBS))
    ap.add_argument("--seconds", type=float, default=4)
    a = ap.parse_args()
    pyvips.cache_set_max(0)
    pyvips.concurrency_set(1)
    cores = os.cpu_count() or 1
    for name in a.jobs:
        runs = [throughput(JOBS[name].render, n, a.seconds) for n in (cores, 2 * cores)]
        best = max(runs, key=lambda r: r["rps"])
        print(json.dumps({"job": name, **best, "layouts": {r["threads"]: r["rps"] for r in runs}}))


if __name__ == "__main__":
    main()
