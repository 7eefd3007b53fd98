"""imgcdn's benchmark: every scenario of issue #5 in one run, against the in-process libvips
limit and thumbor measured in the same run. Start it with `bash bench/run.sh` (which installs
what it needs); this file expects wrk, nginx and the thumbor venv to be there.

    .venv/bin/python bench/run.py [--seconds 10] [--only NAME,...] [--out DIR]
    .venv/bin/python bench/run.py --only vision [--smoke]    (issue #13: bench/vision_report.py)

Writes DIR/results.json (every run, raw) and DIR/results.md (the tables), and prints the
tables. Everything listens on 127.0.0.1; every load run is bounded in time.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import load
import processing
import procstat
import vision_report

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
CORPUS = BENCH / "corpus"
PHOTOS = ("photo-2mp.jpg", "photo-12mp.jpg", "photo-24mp.jpg")
THUMBOR = Path(os.environ.get("BENCH_PEERS", BENCH / ".peers")) / "thumbor-venv" / "bin" / "thumbor"
NGINX_MODULES = Path("/usr/lib/nginx/modules")
QUIET_MAX = float(os.environ.get("BENCH_QUIET_MAX", 30))


def log(line: str) -> None:
    print(line, flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def http(
    url: str, method: str = "GET", data: bytes | None = None, headers: dict[str, str] | None = None
) -> tuple[int, dict[str, str], bytes]:
    request = urllib.request.Request(url, data, headers or {}, method=method)  # noqa: S310
    try:
        with urllib.request.urlopen(request, timeout=120) as response:  # noqa: S310
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


def wait_until(ready: Callable[[], bool], what: str, seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError):
            if ready():
                return
        time.sleep(0.1)
    raise RuntimeError(f"{what} did not come up in {seconds:g} s")


def stop(process: subprocess.Popen[bytes]) -> None:
    """Stop a server and every process it forked: each runs in its own session, and the
    signal goes to the whole group (thumbor's forks outlive a signal to the parent)."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)


# --- the servers -------------------------------------------------------------------------


@dataclass
class Imgcdn:
    base: str
    pid: int
    data: Path

    def metric(self, name: str) -> float:
        """A counter from /metrics, summed over its labels and the workers."""
        text = http(self.base + "/metrics")[2].decode()
        pattern = re.compile(rf"^{re.escape(name)}(?:{{[^}}]*}})? ([0-9.e+]+)$", re.M)
        return sum(float(v) for v in pattern.findall(text))

    def renders(self) -> int:
        return int(self.metric("imgcdn_render_seconds_count"))


@contextlib.contextmanager
def imgcdn(workers: int = 2, exe: Path | None = None, **settings: str) -> Iterator[Imgcdn]:
    """`imgcdn serve` of this checkout's venv, or `exe` (an earlier version's, --baseline)."""
    data = Path(tempfile.mkdtemp(prefix="imgcdn-bench-"))
    port = free_port()
    env = {**os.environ, "IMGCDN_DATA_DIR": str(data), "IMGCDN_LOG_LEVEL": "warning", **settings}
    exe = exe or Path(sys.executable).parent / "imgcdn"
    with (data / "server.log").open("wb") as out:
        process = subprocess.Popen(  # noqa: S603 - our own server
            [str(exe), "serve", "--port", str(port), "--workers", str(workers)],
            env=env,
            stdout=out,
            stderr=out,
            start_new_session=True,
        )
    server = Imgcdn(f"http://127.0.0.1:{port}", process.pid, data)
    try:
        wait_until(lambda: http(server.base + "/healthz")[0] == 200, "imgcdn")
        token = (data / "admin-token").read_text().strip()
        for photo in PHOTOS:
            status, _, body = http(
                f"{server.base}/v1/assets/{photo}",
                "PUT",
                (CORPUS / photo).read_bytes(),
                {"Authorization": f"Bearer {token}"},
            )
            if status not in (200, 201):
                raise RuntimeError(f"upload of {photo}: {status} {body[:200]!r}")
        yield server
    finally:
        stop(process)
        shutil.rmtree(data, ignore_errors=True)


def _nginx(conf: str, prefix: Path, check: str) -> Iterator[int]:
    (prefix / "logs").mkdir(parents=True, exist_ok=True)
    if not (prefix / "modules").exists():
        (prefix / "modules").symlink_to(NGINX_MODULES)
    if os.geteuid() == 0:
        conf = "user root;\n" + conf  # workers as nobody cannot enter a 0700 temp dir
    (prefix / "nginx.conf").write_text(conf)
    process = subprocess.Popen(  # noqa: S603
        [
            shutil.which("nginx") or "/usr/sbin/nginx",
            "-p",
            str(prefix),
            "-c",
            str(prefix / "nginx.conf"),
            "-e",
            "stderr",
            "-g",
            "daemon off;",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        wait_until(lambda: http(check)[0] == 200, "nginx")
        yield process.pid
    finally:
        stop(process)


@contextlib.contextmanager
def edge(upstream: str, root: Path) -> Iterator[tuple[str, int]]:
    """The repo's nginx.conf, with only its EDIT addresses changed, in front of `upstream`."""
    public, internal = free_port(), free_port()
    conf = (ROOT / "nginx.conf").read_text()
    for old, new in (
        ("server 127.0.0.1:8080;", f"server {upstream.removeprefix('http://')};"),
        ("listen 80;", f"listen 127.0.0.1:{public};"),
        ("listen 8081;", f"listen 127.0.0.1:{internal};"),
        ("server 127.0.0.1:8081;", f"server 127.0.0.1:{internal};"),
    ):
        conf = conf.replace(old, new)
    base = f"http://127.0.0.1:{public}"
    for pid in _nginx(conf, root / "edge", base + "/healthz"):
        yield base, pid


@contextlib.contextmanager
def static(root: Path, body: bytes) -> Iterator[tuple[str, int]]:
    """nginx serving one file of `body`: the ceiling for a cache hit of that size. Same
    worker count and keep-alive as the repo's config; no access log, no proxy, no cache."""
    port = free_port()
    files = root / "static"
    files.mkdir(parents=True, exist_ok=True)
    (files / "hit.jpg").write_bytes(body)
    conf = f"""worker_processes auto;
pid nginx.pid;
error_log logs/error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    sendfile on;
    keepalive_requests 10000;
    open_file_cache max=64;
    types {{ image/jpeg jpg; }}
    client_body_temp_path client_body_temp;
    proxy_temp_path proxy_temp;
    fastcgi_temp_path fastcgi_temp;
    uwsgi_temp_path uwsgi_temp;
    scgi_temp_path scgi_temp;
    server {{ listen 127.0.0.1:{port}; root {files}; }}
}}
"""
    base = f"http://127.0.0.1:{port}"
    for pid in _nginx(conf, root / "static-prefix", base + "/hit.jpg"):
        yield base, pid


@contextlib.contextmanager
def thumbor() -> Iterator[tuple[str, int]]:
    """thumbor 7 from PyPI: file loader on the corpus, no storage, no result storage, one
    process per core (as ../shared/bench measured it)."""
    port = free_port()
    with tempfile.TemporaryDirectory() as tmp:
        conf = Path(tmp) / "thumbor.conf"
        conf.write_text(
            "LOADER = 'thumbor.loaders.file_loader'\n"
            f"FILE_LOADER_ROOT_PATH = '{CORPUS}'\n"
            "ALLOW_UNSAFE_URL = True\n"
            "STORAGE = 'thumbor.storages.no_storage'\n"
            "RESULT_STORAGE = None\n"
            "QUALITY = 80\n"
            "RESPECT_ORIENTATION = True\n"
        )
        process = subprocess.Popen(  # noqa: S603
            [str(THUMBOR), "-c", str(conf), "-i", "127.0.0.1", "-p", str(port), "--processes", "0"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        base = f"http://127.0.0.1:{port}"
        try:
            wait_until(lambda: http(base + "/healthcheck")[0] == 200, "thumbor", 60)
            yield base, process.pid
        finally:
            stop(process)


# --- the runs ----------------------------------------------------------------------------


class Bench:
    def __init__(
        self, seconds: float, only: set[str] | None, growth: int = 11000, soak: int = 100_000
    ) -> None:
        self.seconds = seconds
        self.only = only
        self.rows: list[dict[str, Any]] = []
        self.limits: dict[str, dict[str, Any]] = {}
        self.facts: dict[str, Any] = {}
        self.serial = 0
        self.growth = growth  # requests of the memory run
        self.soak = soak  # requests of the soak

    def wanted(self, name: str) -> bool:
        return self.only is None or name in self.only

    def cold_paths(self, photo: str, query: str, count: int = 6000) -> list[str]:
        """Distinct URLs through `v` (part of the variant key, ignored by rendering): the
        same work every time, and no cache can hit. Unique across the whole run."""
        self.serial += 1
        return [f"/t/_/{photo}?{query}&v=r{self.serial}n{i}" for i in range(count)]

    def limit(self, job: str) -> dict[str, Any]:
        procstat.wait_quiet(QUIET_MAX, log)
        done = subprocess.run(  # noqa: S603
            [
                sys.executable,
                str(BENCH / "limit.py"),
                job,
                "--seconds",
                str(max(3.0, self.seconds / 2)),
            ],
            capture_output=True,
            text=True,
            check=True,
        )
        result: dict[str, Any] = json.loads(done.stdout.splitlines()[-1])
        self.limits[job] = result
        self.rows.append({"scenario": "limit", "label": f"libvips in-process, {job}", **result})
        log(
            f"  limit {job}: {result['rps']} renders/s, {result['cpu_ms_per_req']} CPU ms each"
            f" (threads: {result['layouts']})"
        )
        return result

    def record(
        self, scenario: str, label: str, result: dict[str, Any], job: str | None = None
    ) -> dict[str, Any]:
        row = {"scenario": scenario, "label": label, **result}
        if job and job in self.limits:
            row["job"] = job
            row["x_limit"] = round(result["rps"] / self.limits[job]["rps"], 2)
        self.rows.append(row)
        ratio = f"  {row['x_limit']} x limit" if "x_limit" in row else ""
        # A list that ran out repeated its URLs: a cold run that wraps hit the cache.
        wrapped = " (URL LIST WRAPPED)" if result.get("wrapped") and result["paths"] > 1 else ""
        log(
            f"  {label} c={result.get('connections', '-')}: {result['rps']} req/s{ratio}, "
            f"p50 {result['p50_ms']} ms, p99 {result['p99_ms']} ms, errors "
            f"{result['errors'] + result.get('non_2xx_3xx', 0)}, "
            f"{result.get('cpu_ms_per_req', '-')} CPU ms/req, peak RSS "
            f"{result.get('peak_rss_mb_per_proc', '-')} MB/proc, other CPU "
            f"{result['other_cpu_pct']} %{wrapped}"
        )
        return row

    def wrk(
        self,
        scenario: str,
        label: str,
        base: str,
        paths: list[str],
        connections: int,
        pid: int,
        job: str | None = None,
        header: str = "",
    ) -> dict[str, Any]:
        procstat.wait_quiet(QUIET_MAX, log)
        result = load.wrk_run(base, paths, connections, self.seconds, pid, header)
        return self.record(scenario, label, result, job)

    def cold(self, scenario: str, label: str, server: Imgcdn, job: str, c: int) -> None:
        """A cold run of `job` on `server`: fresh URLs, judged against the job's limit."""
        photo, query = COLD[job]
        self.wrk(scenario, label, server.base, self.cold_paths(photo, query), c, server.pid, job)


COLD = {  # job -> (photo, query)
    "jpeg-800": ("photo-12mp.jpg", "w=800&fmt=jpeg&q=80"),
    "webp-800": ("photo-12mp.jpg", "w=800&fmt=webp&q=80"),
    "avif-800": ("photo-12mp.jpg", "w=800&fmt=avif"),
    "jpeg-1600-24mp": ("photo-24mp.jpg", "w=1600&fmt=jpeg&q=80"),
    "jpeg-800-2mp": ("photo-2mp.jpg", "w=800&fmt=jpeg&q=80"),
    "jpeg-800-24mp": ("photo-24mp.jpg", "w=800&fmt=jpeg&q=80"),
}
THUMBOR_PATH = "/unsafe/800x0/filters:format({fmt}):quality(80)/photo-12mp.jpg?n={n}"


def run_codecs(b: Bench) -> None:
    log("== codecs: quality per byte (SSIM on luma) and encode CPU, 12 MP -> 800 px")
    b.facts["codecs"] = json_lines("codecs.py")
    for row in b.facts["codecs"]:
        log(f"  {row['encoding']}: {row['kb']} KB, SSIM {row['ssim']}, {row['encode_cpu_ms']} ms")


def run_main(
    b: Bench, peer: tuple[str, int] | None, work: Path, baseline: Imgcdn | None = None
) -> None:
    with imgcdn() as server:
        if b.wanted("cold"):
            log("== cold renders (every URL distinct through v) against the limit")
            for job in ("jpeg-800", "webp-800", "avif-800", "jpeg-1600-24mp"):
                b.limit(job)
                for c in (4, 16):
                    b.cold("cold", f"imgcdn {job}", server, job, c)
                    # Before and after in one run, back to back against one limit: this
                    # machine's speed drifts too much between two runs to compare them.
                    if baseline and job in ("jpeg-800", "webp-800"):
                        b.cold("baseline", f"baseline {job}", baseline, job, c)
                fmt = COLD[job][1].split("fmt=")[1].split("&")[0]
                if peer and fmt in ("jpeg", "webp") and "24mp" not in job:
                    for c in (4, 16):
                        b.serial += 1
                        paths = [
                            THUMBOR_PATH.format(fmt=fmt, n=f"{b.serial}-{i}") for i in range(6000)
                        ]
                        b.wrk("peer", f"thumbor {job}", peer[0], paths, c, peer[1], job)
        if b.wanted("scaling"):
            log("== scaling: cold JPEG 800 px from 2, 12 and 24 MP (c=4)")
            for job in ("jpeg-800-2mp", "jpeg-800", "jpeg-800-24mp"):
                b.limit(job)
                b.cold("scaling", f"imgcdn {job}", server, job, 4)
        if b.wanted("latency"):
            log("== latency at a fixed rate (open loop): cold JPEG at half its c=4 throughput")
            c4 = next((r["rps"] for r in b.rows if r["label"] == "imgcdn jpeg-800"), 20.0)
            rate = max(1.0, round(c4 / 2))
            procstat.wait_quiet(QUIET_MAX, log)
            result = load.open_loop(
                server.base, b.cold_paths(*COLD["jpeg-800"]), rate, b.seconds, server.pid
            )
            b.record("latency", f"imgcdn jpeg-800 cold at {rate:g}/s", result, "jpeg-800")
        warm = "/t/_/photo-12mp.jpg?w=800&fmt=jpeg&q=80&v=warm"
        _, headers, body = http(server.base + warm)
        http(server.base + warm)  # and the other worker, or it has to go to the store once
        if b.wanted("warm"):
            log("== warm: memory-cache hits, 304 revalidations")
            if baseline:  # its worker caches, too, get the variant first
                http(baseline.base + warm)
                http(baseline.base + warm)
            for c in (4, 16):
                b.wrk("warm", "imgcdn memory hit", server.base, [warm], c, server.pid)
                if baseline:  # back to back: a small request's cost, before and after
                    b.wrk("baseline", "baseline memory hit", baseline.base, [warm], c, baseline.pid)
            procstat.wait_quiet(QUIET_MAX, log)
            result = load.open_loop(server.base, [warm], 500, b.seconds, server.pid)
            b.record("latency", "imgcdn memory hit at 500/s", result)
            renders, reads = server.renders(), server.metric("imgcdn_source_reads_total")
            etag = headers.get("etag") or headers.get("ETag") or ""
            row = b.wrk(
                "warm",
                "imgcdn 304 (If-None-Match)",
                server.base,
                [warm],
                16,
                server.pid,
                header=f"If-None-Match: {etag}",
            )
            row["renders"] = server.renders() - renders
            row["source_reads"] = server.metric("imgcdn_source_reads_total") - reads
            log(f"  304s: {row['renders']} renders, {row['source_reads']:g} originals read")
        if b.wanted("nginx"):
            log("== nginx: hits through the repo's nginx.conf against nginx serving a static file")
            with edge(server.base, work) as (base, pid):
                http(base + warm)
                cached = http(base + warm)[1].get("X-Cache-Status")
                if cached != "HIT":
                    raise RuntimeError(f"nginx did not cache the variant: {cached}")
                for c in (4, 16):
                    b.wrk("nginx", "nginx (repo nginx.conf) hit", base, [warm], c, pid)
            with static(work, body) as (base, pid):
                for c in (4, 16):
                    b.wrk("nginx", "nginx static file, same size", base, ["/hit.jpg"], c, pid)
        if b.wanted("stampede"):
            log("== stampede: 300 concurrent requests for one cold variant, 2 workers")
            before = server.renders()
            statuses = load.burst(server.base + "/t/_/photo-12mp.jpg?w=800&v=stampede", 300)
            renders = server.renders() - before
            b.facts["stampede"] = {
                "requests": len(statuses),
                "renders": renders,
                "ok": statuses.count(200),
            }
            log(f"  {statuses.count(200)}/{len(statuses)} answered 200; renders: {renders}")


def run_settings(b: Bench) -> None:
    """The alternatives to the two speed defaults (shrink rule and JPEG preset, both `fast`,
    which the cold runs above measure), and the variant store off, each against the same
    limit."""
    if not b.wanted("settings"):
        return
    runs = [
        ("IMGCDN_SHRINK_ON_LOAD", "quality", [("jpeg-800", 4), ("jpeg-800", 16), ("webp-800", 16)]),
        ("IMGCDN_JPEG_PRESET", "balanced", [("jpeg-800", 4), ("jpeg-800", 16)]),
        # What the variant store costs a cold render: most on small sources.
        ("IMGCDN_VARIANT_STORE", "0", [("jpeg-800-2mp", 4), ("jpeg-800", 4)]),
    ]
    for name, value, jobs in runs:
        log(f"== {name}={value} against the limit")
        limited: set[str] = set()
        with imgcdn(**{name: value}) as server:
            for job, c in jobs:
                if job not in limited:  # once per job and setting, before its runs
                    b.limit(job)
                    limited.add(job)
                b.cold("settings", f"imgcdn {job}, {name}={value}", server, job, c)


def run_store(b: Bench) -> None:
    if not (b.wanted("warm") or b.wanted("memory")):
        return
    with imgcdn(IMGCDN_MEMORY_CACHE_BYTES="0") as server:
        warm = "/t/_/photo-12mp.jpg?w=800&fmt=jpeg&q=80&v=warm"
        http(server.base + warm)
        if b.wanted("warm"):
            log("== warm: variant-store hits (memory cache off)")
            b.wrk("warm", "imgcdn store hit", server.base, [warm], 16, server.pid)
        if b.wanted("memory"):
            run_growth(b, server)


def run_growth(b: Bench, server: Imgcdn) -> None:
    """RSS per worker every 2,000 cold renders, after a first 1,000. The memory cache is off
    here: its growth up to IMGCDN_MEMORY_CACHE_BYTES is by design and would hide a leak. A
    leak grows without end; the allocator's arenas grow for a while and then level off, so
    the target is judged on the second half of the run (5,000 -> 11,000 by default;
    `--growth 51000` runs longer)."""
    total = b.growth
    log(f"== memory: RSS per worker over {total:,} cold renders (2 MP -> 200 px, memory cache off)")
    paths = [f"/t/_/photo-2mp.jpg?w=200&fmt=jpeg&v=g{i}" for i in range(total)]
    rss = worker_rss(server)
    started = time.monotonic()
    errors = load.fixed_count(server.base, paths[:1000], 8)
    curve = {1000: rss()}
    for done in range(3000, total + 1, 2000):
        errors += load.fixed_count(server.base, paths[done - 2000 : done], 8)
        curve[done] = rss()
    b.facts["growth"] = {
        "rss_mb_per_worker": curve,
        "errors": errors,
        "seconds": round(time.monotonic() - started, 1),
    }
    for done, mb in curve.items():
        log(f"  after {done:>6,} requests: RSS {mb} MB per worker")


def worker_rss(server: Imgcdn) -> Callable[[], list[float]]:
    """A reader of the RSS of each of the server's workers, in MB (its children big enough
    to be one: not multiprocessing's resource tracker)."""
    workers = [
        p for p in procstat.family(server.pid)[1:] if procstat.status_kb(p, "VmRSS") > 40_000
    ]
    return lambda: [round(procstat.status_kb(p, "VmRSS") / 1024, 1) for p in workers]


# The soak's requests, one block of 20 repeated: 65 % memory hits (h), 20 % 304
# revalidations (r), 5 % cold renders (c), 5 % 400s (b) and 5 % 404s (n).
SOAK_MIX = "hrhhchhrhbhhrhhnhhrh"
SOAK_EXPECTED = {"hit": 200, "revalidate": 304, "cold": 200, "bad-param": 400, "missing": 404}
# The memory cache of each worker: small enough for the cold variants (~27 KB each) to fill
# it within the warm-up, so the run measures a full cache evicting. Growth up to
# IMGCDN_MEMORY_CACHE_BYTES (256 MB by default) is by design, and would hide a leak.
SOAK_CACHE_BYTES = 8 * 1024 * 1024
SOAK_WARMUP = 0.2  # of the run: allocator arenas and the cache fill; judged after it


def soak_requests(server: Imgcdn, total: int) -> list[tuple[str, str, dict[str, str]]]:
    """`total` requests in SOAK_MIX's proportions. The hits and revalidations cycle over 18
    variants of the three photos, rendered here first; every cold URL, bad width and
    missing id is distinct, so nothing about them can be cached."""
    warm = [
        f"/t/_/{photo}?w={w}&fmt={fmt}&v=soak"
        for photo in PHOTOS
        for w in (200, 400, 800)
        for fmt in ("jpeg", "webp")
    ]
    etags = {}
    for url in warm:
        status, headers, _ = http(server.base + url)
        if status != 200:
            raise RuntimeError(f"soak warm-up {url}: {status}")
        etags[url] = headers.get("etag") or headers.get("ETag") or ""
    requests: list[tuple[str, str, dict[str, str]]] = []
    for i in range(total):
        url = warm[i % len(warm)]
        kind = SOAK_MIX[i % len(SOAK_MIX)]
        if kind == "h":
            requests.append(("hit", url, {}))
        elif kind == "r":
            requests.append(("revalidate", url, {"If-None-Match": etags[url]}))
        elif kind == "c":
            requests.append(("cold", f"/t/_/photo-2mp.jpg?w=400&fmt=jpeg&v=soak{i}", {}))
        elif kind == "b":
            requests.append(("bad-param", f"/t/_/photo-2mp.jpg?w=x{i}", {}))
        else:
            requests.append(("missing", f"/t/_/missing-{i}.jpg?w=200", {}))
    return requests


def run_soak(b: Bench) -> None:
    """RSS per worker over `b.soak` mixed requests (`--soak N`), sampled every tenth of the
    run, on 2 workers with a small memory cache (SOAK_CACHE_BYTES). The asyncio driver at
    8 connections, so every request is sent exactly once and each kind's statuses counted."""
    if not b.wanted("soak"):
        return
    total = b.soak
    log(f"== soak: RSS per worker over {total:,} mixed requests (hits, 304s, cold, 400s, 404s)")
    with imgcdn(IMGCDN_MEMORY_CACHE_BYTES=str(SOAK_CACHE_BYTES)) as server:
        requests = soak_requests(server, total)
        rss = worker_rss(server)
        procstat.wait_quiet(QUIET_MAX, log)
        curve = {0: rss()}
        outcomes: Counter[str] = Counter()
        caches: Counter[str] = Counter()
        watch = load.Watch(server.pid)
        watch.start()
        started = time.monotonic()
        done = 0
        for mark in (total * k // 10 for k in range(1, 11)):
            tally = load.mixed(server.base, requests[done:mark], 8)
            outcomes.update(tally["outcomes"])
            caches.update(tally["x_cache"])
            done = mark
            curve[done] = rss()
            log(f"  after {done:>7,} requests: RSS {curve[done]} MB per worker")
        seconds = time.monotonic() - started
        figures = watch.stop(total)
    unexpected = 0
    for key, n in outcomes.items():
        kind, _, status = key.partition(" ")
        unexpected += n if status != str(SOAK_EXPECTED[kind]) else 0
    b.facts["soak"] = {
        "requests": total,
        "seconds": round(seconds, 1),
        "rps": round(total / seconds, 1),
        "rss_mb_per_worker": curve,
        "answers": dict(sorted(outcomes.items())),
        "x_cache": dict(sorted(caches.items())),
        "unexpected": unexpected,
        "memory_cache_bytes": SOAK_CACHE_BYTES,
        **figures,
    }
    log(
        f"  {total:,} requests in {seconds:.0f} s ({total / seconds:,.0f} req/s), "
        f"{figures.get('cpu_ms_per_req')} CPU ms/req, other CPU {figures['other_cpu_pct']} %; "
        f"answers {dict(sorted(outcomes.items()))}, {unexpected} unexpected"
    )


def run_processing(b: Bench, baseline: Path | None = None) -> None:
    """Issue #11: POST /v1/image/process, cold (multipart and base64, every body a distinct
    image) against the limit, repeated (served from the stored result), and what an API key
    and its rate limit add (bench/processing.py). With `baseline` (an earlier imgcdn), each
    cold run is made on it too, back to back against the same limit."""
    if not b.wanted("processing"):
        return
    log("== processing API: POST /v1/image/process, 12 MP -> 800 px JPEG q80")
    folder = processing.temp_folder()
    try:
        with contextlib.ExitStack() as stack:
            server = stack.enter_context(imgcdn())
            servers = [("", server)]
            if baseline:
                servers.insert(0, ("baseline: ", stack.enter_context(imgcdn(exe=baseline))))
            _run_processing(b, servers, folder)
        b.facts["auth_cost"] = json_lines("auth_cost.py", cwd=ROOT)
        for row in b.facts["auth_cost"]:
            log(f"  authenticate in-process, {row['case']}: {row['cpu_us']} CPU us per call")
        procstat.wait_quiet(QUIET_MAX, log)
        b.facts["process_cost"] = json_lines("process_cost.py", "--rounds", "20", cwd=ROOT)
        for row in b.facts["process_cost"]:
            log(f"  {row['kind']}, CPU ms per piece in-process: {row['cpu_ms']}")
    finally:
        shutil.rmtree(folder, ignore_errors=True)


PROCESS_PATH = "/v1/image/process"


def _admin(server: Imgcdn) -> dict[str, str]:
    return {"Authorization": "Bearer " + (server.data / "admin-token").read_text().strip()}


def _run_processing(b: Bench, servers: list[tuple[str, Imgcdn]], folder: Path) -> None:
    server = servers[-1][1]  # this checkout's
    admin = _admin(server)
    status, _, made = http(
        server.base + "/v1/keys",
        "POST",
        json.dumps({"name": "bench", "rate_per_s": 1e5, "burst": 10**6}).encode(),
        {**admin, "Content-Type": "application/json"},
    )
    if status != 201:
        raise RuntimeError(f"POST /v1/keys: {status} {made[:200]!r}")
    keyed = {"X-API-KEY": json.loads(made)["key"]}
    bodies = processing.cold_bodies(folder)
    for kind, (prefix, suffix, ctype) in bodies.items():  # each shape renders, once
        for counter in ("0" * 16, "9" * 16):
            body = processing.sample_body(prefix, suffix, counter)
            for _, each in servers:
                headers = {**_admin(each), "Content-Type": ctype}
                status, _, answer = http(each.base + PROCESS_PATH, "POST", body, headers)
                if status != 200 or json.loads(answer)["width"] != 800:
                    raise RuntimeError(f"{kind} body: {status} {answer[:300]!r}")
    b.limit("jpeg-800")
    for kind, (prefix, suffix, ctype) in bodies.items():
        for c in (4, 16):
            for name, each in servers:
                b.serial += 1
                procstat.wait_quiet(QUIET_MAX, log)
                renders, outcomes, statuses = each.renders(), _outcomes(each), _statuses(each)
                result = processing.wrk_post(
                    each.base, PROCESS_PATH, prefix, suffix,
                    {**_admin(each), "Content-Type": ctype}, c, b.seconds, each.pid, b.serial,
                )  # fmt: skip
                label = f"{name}process {kind}, distinct images"
                row = b.record("processing", label, result, "jpeg-800")
                processing.settled(each.renders)
                row["renders"] = each.renders() - renders
                row["outcomes"] = {k: v - outcomes.get(k, 0) for k, v in _outcomes(each).items()}
                row["statuses"] = _delta(_statuses(each), statuses)
                row["ok"] = result["requests"] - result["non_2xx_3xx"]
                log(
                    f"  {row['ok']} x 200, {row['renders']} renders, results {row['outcomes']}, "
                    f"statuses {row['statuses']}; "
                    f"wrk {result['client_cpu_ms_per_req']} CPU ms/req"
                )
    repeated = folder / "repeated.json"
    repeated.write_text(json.dumps({"image": {"id": "photo-12mp.jpg"}, "ops": processing.OPS}))
    for _ in range(4):  # rendered once, then found by both workers
        status, _, answer = http(
            server.base + PROCESS_PATH, "POST", repeated.read_bytes(),
            {**admin, "Content-Type": "application/json"},
        )  # fmt: skip
        if status != 200:
            raise RuntimeError(f"repeated body: {status} {answer[:300]!r}")
    # Admin token and API key back to back, twice at c=16 so drift shows as a spread, then
    # at c=1: there the p50 difference is the time a key adds, not queueing behind others.
    pairs = (("admin token", admin), ("API key", keyed))
    for c, (who, headers) in [(16, pair) for pair in pairs * 2] + [(1, pair) for pair in pairs]:
        procstat.wait_quiet(QUIET_MAX, log)
        renders, statuses = server.renders(), _statuses(server)
        result = processing.wrk_post(
            server.base, PROCESS_PATH, repeated, None,
            {**headers, "Content-Type": "application/json"}, c, b.seconds, server.pid, 0,
        )  # fmt: skip
        row = b.record("processing", f"process repeated (stored result), {who}", result)
        row["renders"] = server.renders() - renders
        row["statuses"] = _delta(_statuses(server), statuses)
        log(f"  renders during the run: {row['renders']}; statuses {row['statuses']}")


def _by_label(server: Imgcdn, name: str, label: str, where: str = "") -> dict[str, float]:
    """A labelled counter from /metrics by one label's value, summed over the workers;
    only the series whose labels contain `where`."""
    text = http(server.base + "/metrics")[2].decode()
    found: dict[str, float] = {}
    pattern = rf"^{name}{{([^}}]*)}} ([0-9.e+]+)$"
    for labels, value in re.findall(pattern, text, re.M):
        got = re.search(rf'{label}="([^"]*)"', labels)
        if got and where in labels:
            found[got[1]] = found.get(got[1], 0) + float(value)
    return found


def _outcomes(server: Imgcdn) -> dict[str, float]:
    """imgcdn_results_total by outcome (saved, reused)."""
    return _by_label(server, "imgcdn_results_total", "outcome")


def _statuses(server: Imgcdn) -> dict[str, float]:
    """imgcdn_requests_total of the process route, by status."""
    return _by_label(server, "imgcdn_requests_total", "status", PROCESS_PATH)


def _delta(after: dict[str, float], before: dict[str, float]) -> dict[str, float]:
    return {k: v - before.get(k, 0) for k, v in after.items() if v - before.get(k, 0)}


# --- the report --------------------------------------------------------------------------


def _fmt(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:,.1f}" if value >= 100 else f"{value:g}"
    return str(value)


def report(b: Bench) -> str:
    lines = [
        "| scenario | what | c | req/s | x limit | p50 ms | p99 ms | errors | CPU ms/req "
        "| peak RSS MB/proc | other CPU % |",
        "|" + "---|" * 11,
    ]
    for r in b.rows:
        if r["scenario"] == "limit":
            lines.append(
                f"| limit | {r['label']} ({r['threads']} threads) | | {_fmt(r['rps'])} "
                f"| 1 | | | | {_fmt(r['cpu_ms_per_req'])} | | |"
            )
            continue
        c = r.get("connections") or f"{r.get('rate', '')}/s"
        errors = r["errors"] + r.get("non_2xx_3xx", 0)
        lines.append(
            f"| {r['scenario']} | {r['label']} | {c} | {_fmt(r['rps'])} | {_fmt(r.get('x_limit'))} "
            f"| {_fmt(r['p50_ms'])} | {_fmt(r['p99_ms'])} | {errors} "
            f"| {_fmt(r.get('cpu_ms_per_req'))} | {_fmt(r.get('peak_rss_mb_per_proc'))} "
            f"| {r['other_cpu_pct']} |"
        )
    out = ["## Runs", "", *lines, ""]
    if "codecs" in b.facts:
        out += [
            "## Codecs (12 MP -> 800 px, SSIM on luma against the unencoded resize)",
            "",
            "| encoding | KB | SSIM | encode CPU ms |",
            "|---|---|---|---|",
        ]
        out += [
            f"| {r['encoding']} | {r['kb']} | {r['ssim']} | {r['encode_cpu_ms']} |"
            for r in b.facts["codecs"]
        ]
        out.append("")
    if "soak" in b.facts:
        out += soak_report(b.facts["soak"])
    if "process_cost" in b.facts:
        costs = b.facts["process_cost"]
        out += [
            "## Processing: CPU ms per piece of a cold request, in-process (median)",
            "",
            "| piece | " + " | ".join(c["kind"] for c in costs) + " |",
            "|---|" + "---|" * len(costs),
        ]
        out += [
            f"| {piece} | " + " | ".join(str(c["cpu_ms"].get(piece, "")) for c in costs) + " |"
            for piece in costs[0]["cpu_ms"]
        ]
        out.append("")
    if "auth_cost" in b.facts:
        out += ["## authenticate, in-process (bench/auth_cost.py)", "",
                "| case | CPU us/call | p50 us | p99 us |", "|---|---|---|---|"]  # fmt: skip
        out += [
            f"| {r['case']} | {r['cpu_us']} | {r['p50_us']} | {r['p99_us']} |"
            for r in b.facts["auth_cost"]
        ]
        out.append("")
    if "vision" in b.facts:
        out += vision_report.report(b.facts["vision"])
    out += ["## Targets", "", "| target | measured | met |", "|---|---|---|"]
    out += [f"| {t} | {m} | {'yes' if ok else '**no**'} |" for t, m, ok in targets(b)]
    return "\n".join(out) + "\n"


def soak_report(soak: dict[str, Any]) -> list[str]:
    curve = soak["rss_mb_per_worker"]
    workers = len(next(iter(curve.values())))
    out = [
        f"## Soak: {soak['requests']:,} mixed requests, 2 workers, "
        f"IMGCDN_MEMORY_CACHE_BYTES={soak['memory_cache_bytes']:,}",
        "",
        f"{soak['seconds']:g} s ({soak['rps']:,.0f} req/s), {soak.get('cpu_ms_per_req')} "
        f"server CPU ms/req, other CPU {soak['other_cpu_pct']} %. Answers: "
        + ", ".join(f"{k}: {n:,}" for k, n in soak["answers"].items())
        + f" ({soak['unexpected']} unexpected). X-Cache: "
        + ", ".join(f"{k}: {n:,}" for k, n in soak["x_cache"].items())
        + ".",
        "",
        "| requests | " + " | ".join(f"RSS MB worker {i + 1}" for i in range(workers)) + " |",
        "|---|" + "---|" * workers,
    ]
    out += [f"| {n:,} | " + " | ".join(map(str, mb)) + " |" for n, mb in curve.items()]
    return [*out, ""]


def targets(b: Bench) -> list[tuple[str, str, bool]]:
    found: list[tuple[str, str, bool]] = []

    def rows(label: str, scenario: str | None = None) -> list[dict[str, Any]]:
        return [r for r in b.rows if r["label"] == label and scenario in (None, r["scenario"])]

    for job in ("jpeg-800", "webp-800"):
        ratios = [r["x_limit"] for r in rows(f"imgcdn {job}", "cold") if "x_limit" in r]
        if ratios:
            found.append(
                (
                    f"cold {job} >= 0.95 x limit (c=4, 16)",
                    " / ".join(map(str, ratios)),
                    min(ratios) >= 0.95,
                )
            )
        before = [r["x_limit"] for r in rows(f"baseline {job}", "baseline") if "x_limit" in r]
        if before and len(before) == len(ratios):
            found.append(
                (
                    f"cold {job}, x limit: --baseline -> this checkout (c=4, 16)",
                    " / ".join(f"{o} -> {n}" for o, n in zip(before, ratios, strict=True)),
                    True,
                )
            )
        peer = [r["rps"] for r in rows(f"thumbor {job}", "peer")]
        ours = [r["rps"] for r in rows(f"imgcdn {job}", "cold")]
        if peer and len(peer) == len(ours):
            vs = " / ".join(f"{o / p:.2f}" for o, p in zip(ours, peer, strict=True))
            found.append((f"cold {job}: imgcdn / thumbor (c=4, 16)", vs, True))
    avif = [r["rps"] for r in rows("imgcdn avif-800")]
    if avif:
        found.append(
            ("cold AVIF >= 8 renders/s (c=4, 16)", " / ".join(map(str, avif)), min(avif) >= 8)
        )
    hits = [r["rps"] for r in rows("imgcdn memory hit")]
    if hits:
        found.append(
            (
                "memory hit >= 3,000 req/s (c=4, 16)",
                " / ".join(f"{h:,.0f}" for h in hits),
                max(hits) >= 3000,
            )
        )
    edge_rps = [r["rps"] for r in rows("nginx (repo nginx.conf) hit")]
    static_rps = [r["rps"] for r in rows("nginx static file, same size")]
    if edge_rps and len(edge_rps) == len(static_rps):
        ratios = [round(e / s, 2) for e, s in zip(edge_rps, static_rps, strict=True)]
        found.append(
            (
                "nginx hit >= 0.8 x nginx static (c=4, 16)",
                " / ".join(map(str, ratios)),
                min(ratios) >= 0.8,
            )
        )
    for r in rows("imgcdn 304 (If-None-Match)"):
        found.append(
            (
                "a 304 costs no render and no source read",
                f"{r['renders']} renders, {r['source_reads']:g} reads in {r['requests']:,} 304s",
                r["renders"] == 0 and r["source_reads"] == 0,
            )
        )
    if "stampede" in b.facts:
        s = b.facts["stampede"]
        found.append(
            (
                "stampede: 1 render for one cold key",
                f"{s['renders']} render(s) for {s['requests']} requests ({s['ok']} x 200)",
                s["renders"] == 1 and s["ok"] == s["requests"],
            )
        )
    mem = rows("imgcdn jpeg-1600-24mp")
    if mem:
        peak = max(r["peak_rss_mb_per_proc"] for r in mem)
        found.append(
            (
                "peak RSS <= 400 MB per worker, 16 concurrent 24 MP renders",
                f"{peak} MB",
                peak <= 400,
            )
        )
    if "growth" in b.facts:
        curve = b.facts["growth"]["rss_mb_per_worker"]
        ends = sorted(curve)
        first, last = ends[0], ends[-1]
        mid = min(ends, key=lambda n: abs(n - (first + last) / 2))  # 5,000 of 11,000
        growth = max(z - m for z, m in zip(curve[last], curve[mid], strict=True))
        found.append(
            (
                f"no RSS growth over {last - first:,} requests ({mid:,} -> {last:,}: <= 10 MB)",
                f"{curve[first]} -> {curve[mid]} -> {curve[last]} MB per worker "
                f"({first:,}, {mid:,}, {last:,})",
                growth <= 10,
            )
        )
    found += processing_targets(rows, b.facts)
    found += jobs_targets(b.facts)
    found += vision_report.targets(b.facts["vision"]) if "vision" in b.facts else []
    if "soak" in b.facts:
        soak = b.facts["soak"]
        curve = soak["rss_mb_per_worker"]
        last = max(curve)
        warm = min(curve, key=lambda n: abs(n - SOAK_WARMUP * last))  # 20,000 of 100,000
        growth = max(z - w for z, w in zip(curve[last], curve[warm], strict=True))
        found.append(
            (
                f"soak: RSS per worker flat after warm-up ({warm:,} -> {last:,} mixed "
                "requests: <= 10 MB), every answer as expected",
                f"{curve[warm]} -> {curve[last]} MB per worker, {soak['unexpected']} unexpected",
                growth <= 10 and soak["unexpected"] == 0,
            )
        )
    return found


def json_lines(script: str, *args: str, cwd: Path | None = None) -> list[dict[str, Any]]:
    """Run one of bench/'s scripts with this interpreter; the JSON lines it prints."""
    done = subprocess.run(  # noqa: S603 - our own script
        [sys.executable, str(BENCH / script), *args],
        capture_output=True, text=True, check=True, cwd=cwd,
    )  # fmt: skip
    return [json.loads(line) for line in done.stdout.splitlines()]


def run_jobs(b: Bench) -> None:
    """Issue #12: a 200-item batch against the cold /v1/image/process rate of the same
    work, and the queue's overhead per item, embedded and on Redis (bench/jobs.py)."""
    if not b.wanted("jobs"):
        return
    log("== jobs: a 200-item batch (12 MP -> 800 px JPEG) against /v1/image/process")
    procstat.wait_quiet(QUIET_MAX, log)
    b.facts["jobs"] = json_lines("jobs.py", "--items", "200", cwd=BENCH)
    for row in b.facts["jobs"]:
        log(f"  {row['backend']}: {row}")


def run_vision(b: Bench, smoke: bool) -> None:
    """Issue #13: every vision feature at 12 MP, each in a fresh process, and the install
    footprint (bench/vision_report.py runs the scripts and makes the tables)."""
    if not b.wanted("vision"):
        return
    log("== vision: CPU, wall, peak RSS and model load per feature at 12 MP; footprint")
    procstat.wait_quiet(QUIET_MAX, log)
    b.facts["vision"] = vision_report.run(log, smoke)


def jobs_targets(facts: dict[str, Any]) -> list[tuple[str, str, bool]]:
    found: list[tuple[str, str, bool]] = []
    for row in facts.get("jobs", []):
        found.append(
            (
                f"jobs, {row['backend']}: a 200-item batch >= 0.9 x the cold process rate, "
                "every item rendered once",
                f"{row['batch_items_per_s']} items/s against {row['process_rps']} req/s: "
                f"{row['x_process']} x; {row['succeeded']} succeeded, {row['renders']} renders",
                row["x_process"] >= 0.9 and row["succeeded"] == row["items"],
            )
        )
        found.append(
            (
                f"jobs, {row['backend']}: queue overhead per item on an idle server (measured)",
                f"enqueue -> start <= {row['queue_wait_median_ms']} ms (median bucket); "
                f"a small item {row['small_item_batch_ms']} ms submit -> completed against "
                f"{row['small_item_process_ms']} ms through /v1/image/process",
                True,
            )
        )
    return found


def processing_targets(
    rows: Callable[..., list[dict[str, Any]]], facts: dict[str, Any]
) -> list[tuple[str, str, bool]]:
    """Issue #11's targets, from run_processing's rows."""
    found: list[tuple[str, str, bool]] = []
    for kind in ("multipart", "base64"):
        runs = rows(f"process {kind}, distinct images")
        if not runs:
            continue
        ratios = [r["x_limit"] for r in runs]
        # The limit's CPU per render over the server's per request: the same ratio as a
        # CPU budget, steadier than req/s when other work takes cores during a run.
        limit_cpu = [r["cpu_ms_per_req"] for r in rows("libvips in-process, jpeg-800", "limit")]
        by_cpu = ""
        if limit_cpu:
            by_cpu = (
                " (by CPU: "
                + " / ".join(f"{limit_cpu[-1] / r['cpu_ms_per_req']:.2f}" for r in runs)
                + ")"
            )
        found.append(
            (
                f"process, {kind} upload, cold >= 0.85 x limit (c=4, 16)",
                " / ".join(map(str, ratios)) + by_cpu,
                min(ratios) >= 0.85,
            )
        )  # fmt: skip
        # Renders that crossed wrk's deadline finished unanswered: up to c more than 200s.
        fair = all(
            r["outcomes"].get("reused", 0) == 0
            and 0 <= r["renders"] - r["ok"] <= r["connections"]
            and r["errors"] + r["non_2xx_3xx"] == 0
            for r in runs
        )
        found.append(
            (
                f"process, {kind}: one render per request, none reused, no error",
                "; ".join(
                    f"{r['ok']} x 200, {r['renders']} renders, "
                    f"{r['outcomes'].get('reused', 0):g} reused"
                    for r in runs
                ),
                fair,
            )
        )
        before = rows(f"baseline: process {kind}, distinct images")
        if len(before) == len(runs):
            found.append(
                (
                    f"process, {kind}, x limit: --baseline -> this checkout (c=4, 16)",
                    " / ".join(
                        f"{o['x_limit']} -> {n['x_limit']} ({n['rps'] / o['rps']:.2f}x; "
                        f"CPU ms/req {o['cpu_ms_per_req']:g} -> {n['cpu_ms_per_req']:g})"
                        for o, n in zip(before, runs, strict=True)
                    ),
                    True,
                )
            )

    def repeated(who: str, c: int) -> list[dict[str, Any]]:
        return [
            r for r in rows(f"process repeated (stored result), {who}") if r["connections"] == c
        ]

    admin, keyed = repeated("admin token", 16), repeated("API key", 16)
    if admin:
        found.append(
            (
                "process, repeated request (stored result) >= 1,000 req/s at c=16, no render",
                " / ".join(f"{r['rps']:,.0f}" for r in admin + keyed)
                + f"; {sum(r['renders'] for r in admin + keyed)} renders",
                min(r["rps"] for r in admin + keyed) >= 1000
                and sum(r["renders"] for r in admin + keyed) == 0,
            )
        )
    if admin and len(keyed) == len(admin):
        cpu = [k["cpu_ms_per_req"] - a["cpu_ms_per_req"] for a, k in zip(admin, keyed, strict=True)]
        p50 = [k["p50_ms"] - a["p50_ms"] for a, k in zip(admin, keyed, strict=True)]
        inproc = {r["case"]: r["cpu_us"] for r in facts.get("auth_cost", [])}
        extra = ""
        if inproc:
            key = inproc.get("api key + rate limit", 0)
            extra = (
                f"; in-process authenticate {key - inproc.get('admin token (no state)', 0):.0f} us"
            )
        failed = sum(r["errors"] + r["non_2xx_3xx"] for r in keyed + repeated("API key", 1))
        alone = [
            k["p50_ms"] - a["p50_ms"]
            for a, k in zip(repeated("admin token", 1), repeated("API key", 1), strict=True)
        ]
        found.append(
            (
                "API key + rate limit < 0.5 ms per request (vs admin token)",
                "CPU ms/req +" + " / +".join(f"{d:.2f}" for d in cpu)
                + " (c=16); p50 ms " + " / ".join(f"{d:+.2f}" for d in p50) + " (c=16), "
                + " / ".join(f"{d:+.2f}" for d in alone) + " (c=1)" + extra
                + f"; errors with a key: {failed}",
                max(cpu) < 0.5 and max(alone, default=0) < 0.5 and failed == 0,
            )
        )  # fmt: skip
    return found


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--seconds", type=float, default=10, help="each load run (default 10)")
    ap.add_argument(
        "--only",
        help="comma-separated: codecs,cold,scaling,latency,warm,nginx,stampede,settings,memory,"
        "soak,processing,jobs,vision",
    )
    ap.add_argument(
        "--smoke", action="store_true", help="vision scripts on small images, one run each"
    )
    ap.add_argument("--no-peer", action="store_true", help="skip thumbor")
    ap.add_argument(
        "--growth", type=int, default=11000, help="requests of the memory run (default 11000)"
    )
    ap.add_argument(
        "--soak", type=int, default=100_000, help="requests of the soak (default 100000)"
    )
    ap.add_argument("--out", type=Path, help="results folder (default bench/results/<time>)")
    ap.add_argument(
        "--baseline",
        type=Path,
        help="the imgcdn executable of an earlier version (run.sh --baseline REV installs\n"
        "one): its cold JPEG and WebP run beside this checkout's, against the same limits",
    )
    a = ap.parse_args()
    out = a.out or BENCH / "results" / datetime.now().strftime("%Y%m%d-%H%M%S")
    out.mkdir(parents=True, exist_ok=True)
    only = set(a.only.split(",")) if a.only else None
    b = Bench(a.seconds, only, max(3000, a.growth), max(1000, a.soak))
    started = time.monotonic()
    log(f"imgcdn bench: {os.cpu_count()} cores, {a.seconds:g} s a run, results in {out}")
    if b.wanted("codecs"):
        run_codecs(b)
    with tempfile.TemporaryDirectory(prefix="imgcdn-bench-") as tmp:
        with contextlib.ExitStack() as stack:
            peer = None
            if not a.no_peer and b.wanted("cold"):
                peer = stack.enter_context(thumbor())
            baseline = None
            if a.baseline and (b.wanted("cold") or b.wanted("warm")):
                baseline = stack.enter_context(imgcdn(exe=a.baseline))
            main_runs = ("cold", "scaling", "latency", "warm", "nginx", "stampede")
            if any(b.wanted(name) for name in main_runs):
                run_main(b, peer, Path(tmp), baseline)
        run_settings(b)
        run_store(b)
        run_soak(b)
        run_processing(b, a.baseline)
        run_jobs(b)
        run_vision(b, a.smoke)
    b.facts["seconds"] = round(time.monotonic() - started)
    (out / "results.json").write_text(json.dumps({"rows": b.rows, "facts": b.facts}, indent=1))
    table = report(b)
    (out / "results.md").write_text(table)
    log("\n" + table)
    log(f"done in {b.facts['seconds']} s; {out / 'results.md'}")


if __name__ == "__main__":
    main()
