"""The Prometheus metrics, and the small calls the rest of the server records them with.

Names and labels are what the Grafana dashboard charts: rename nothing. Every label is
low-cardinality by construction: a route is its template ("/t/{template}/{id}"), never a
raw path, so asset ids never reach a series; a request that matched no route is
"unmatched"; a status of "0" means the client left before any response started.

Multiprocess: `imgcdn serve --workers N` (N > 1) points PROMETHEUS_MULTIPROC_DIR at a
fresh folder before the workers start. prometheus_client reads it at import to keep every
value in a per-process file there, and a scrape, whichever worker answers it, sums them
all: counters and histograms over every worker that ever ran, gauges over the live ones
("livesum"). With one worker the values stay in memory, with the process_* metrics.
"""

from __future__ import annotations

import functools
import os
import re
from pathlib import Path
from typing import Literal

from prometheus_client import (
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client import multiprocess as _multiprocess

CacheLevel = Literal["memory", "store", "originals"]
CACHE_LEVELS: tuple[CacheLevel, ...] = ("memory", "store", "originals")

# prometheus_client chose its value store from this variable when it was imported (just
# above); read at the same moment, so the scrape below always matches that choice.
MULTIPROCESS_DIR = os.environ.get("PROMETHEUS_MULTIPROC_DIR")

# Multiprocess mode has no `_created` series; drop them in memory too, so one worker and
# many expose the same series.
disable_created_metrics()  # type: ignore[no-untyped-call]  # untyped in prometheus_client

# From a small cached variant (a few ms) to a large AVIF near the render timeout.
SECONDS_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)

REQUESTS = Counter(
    "imgcdn_requests_total", "HTTP requests by route template and status", ["route", "status"]
)
REQUEST_SECONDS = Histogram(
    "imgcdn_request_seconds",
    "Time from request to the end of the response, by route template",
    ["route"],
    buckets=SECONDS_BUCKETS,
)
RENDER_SECONDS = Histogram(
    "imgcdn_render_seconds",
    "Time a render spends in libvips (decode, transform, encode), by output format",
    ["format"],
    buckets=SECONDS_BUCKETS,
)
CACHE_HITS = Counter(
    "imgcdn_cache_hits_total",
    "Variants served from the memory LRU or the variant store; renders whose source came "
    "from the local originals cache",
    ["level"],
)
CACHE_MISSES = Counter(
    "imgcdn_cache_misses_total", "Variant requests that found the variant in no cache"
)
SOURCE_READS = Counter(
    "imgcdn_source_reads_total",
    "Originals read for a render, from storage or the local originals cache",
)
COALESCED_WAITS = Counter(
    "imgcdn_coalesced_waits_total", "Misses that waited on an identical render in flight"
)
QUEUE_DEPTH = Gauge(
    "imgcdn_render_queue_depth",
    "Renders waiting for a render thread",
    multiprocess_mode="livesum",
)
IN_FLIGHT = Gauge(
    "imgcdn_renders_in_flight", "Renders running in a render thread", multiprocess_mode="livesum"
)
STORAGE_ERRORS = Counter(
    "imgcdn_storage_errors_total", "Storage backend failures by operation", ["op"]
)
STORE_WRITE_FAILURES = Counter(
    "imgcdn_variant_store_write_failures_total",
    "Variant-store writes that failed (made after the response; the variant is rendered "
    "again on its next miss)",
)
RESULTS = Counter(
    "imgcdn_results_total",
    "Processing results stored after a render (saved), or answered again without one (reused)",
    ["outcome"],
)
RESULTS_SWEPT = Counter(
    "imgcdn_results_swept_total", "Expired processing results (and stray bytes) deleted"
)
BYTES_IN = Counter("imgcdn_bytes_in_total", "Request body bytes received")
BYTES_OUT = Counter("imgcdn_bytes_out_total", "Response body bytes sent")

for _level in CACHE_LEVELS:  # charted from zero, not from the first hit
    CACHE_HITS.labels(_level)
ResultOutcome = Literal["saved", "reused"]
for _outcome in ("saved", "reused"):
    RESULTS.labels(_outcome)


def request_observed(
    route: str, status: str, seconds: float, bytes_in: int, bytes_out: int
) -> None:
    """One finished request: `route` from `route_label`, `status` as sent ("0": none)."""
    REQUESTS.labels(route, status).inc()
    REQUEST_SECONDS.labels(route).observe(seconds)
    if bytes_in:
        BYTES_IN.inc(bytes_in)
    if bytes_out:
        BYTES_OUT.inc(bytes_out)


@functools.lru_cache(maxsize=128)  # one entry per route: the label set is the route table
def route_label(template: str | None) -> str:
    """A starlette route's path as a label, convertors dropped: "/v1/assets/{id:anypath}"
    -> "/v1/assets/{id}". None (no route matched) -> "unmatched"."""
    if template is None:
        return "unmatched"
    return re.sub(r"\{(\w+):\w+\}", r"{\1}", template)


def render_observed(fmt: str, seconds: float) -> None:
    """A finished render's libvips time, by output format (jpeg, png, webp, avif, gif)."""
    RENDER_SECONDS.labels(fmt).observe(seconds)


def cache_hit(level: CacheLevel) -> None:
    CACHE_HITS.labels(level).inc()


def cache_miss() -> None:
    CACHE_MISSES.inc()


def source_read() -> None:
    SOURCE_READS.inc()


def coalesced() -> None:
    COALESCED_WAITS.inc()


def storage_error(op: str) -> None:
    """A backend failure (what becomes StorageUnavailable), by the call that met it: the S3
    API name in s3.py ("get_object", "put_object", ...), the method name in local.py."""
    STORAGE_ERRORS.labels(op).inc()


def store_write_failed() -> None:
    """A variant-store write that failed: logged, never seen by the client it rendered for."""
    STORE_WRITE_FAILURES.inc()


def result(outcome: ResultOutcome) -> None:
    """A processing request answered with a new result (saved) or a stored one (reused)."""
    RESULTS.labels(outcome).inc()


def results_swept(count: int) -> None:
    RESULTS_SWEPT.inc(count)


def queue(queued: int, running: int) -> None:
    """The render pool's state: renders waiting for a thread, and renders running."""
    QUEUE_DEPTH.set(queued)
    IN_FLIGHT.set(running)


def exposition() -> bytes:
    """Every metric in the Prometheus text format (content type CONTENT_TYPE_LATEST)."""
    if MULTIPROCESS_DIR is None:
        return generate_latest(REGISTRY)
    _forget_dead_workers(Path(MULTIPROCESS_DIR))
    registry = CollectorRegistry()
    _multiprocess.MultiProcessCollector(registry, MULTIPROCESS_DIR)  # type: ignore[no-untyped-call]  # untyped upstream
    return generate_latest(registry)


def _forget_dead_workers(folder: Path) -> None:
    # A worker that crashed (uvicorn starts another) would otherwise hold its last queue
    # depth in the "livesum" gauges for good. Its counters stay: totals never go back.
    for file in folder.glob("gauge_live*_*.db"):
        pid = file.stem.rsplit("_", 1)[1]
        if pid.isdigit() and not _alive(int(pid)):
            _multiprocess.mark_process_dead(int(pid), str(folder))  # type: ignore[no-untyped-call]  # untyped upstream


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


WEBHOOK_ATTEMPTS = Counter(
    "imgcdn_webhook_attempts_total",
    "Webhook delivery attempts by outcome: delivered (2xx), retry (timeout, connection "
    "error or another answer) or refused (the SSRF guard refused the target)",
    ["outcome"],
)
for _outcome in ("delivered", "retry", "refused"):  # charted from zero
    WEBHOOK_ATTEMPTS.labels(_outcome)


def webhook_attempted(outcome: str) -> None:
    """One webhook delivery attempt ended (webhooks.deliver)."""
    WEBHOOK_ATTEMPTS.labels(outcome).inc()


# Jobs (SPEC §8). The gauges are read from the job store, which every process shares: each
# process sets the same value, so the scrape takes the largest live one, not the sum.
JOB_ITEMS = Gauge(
    "imgcdn_job_items",
    "Job items by state, over every kept job (pending, running, succeeded, failed, cancelled)",
    ["state"],
    multiprocess_mode="livemax",
)
JOB_QUEUE_DEPTH = Gauge(
    "imgcdn_job_queue_depth",
    "Job queue messages waiting or running (items and webhook deliveries)",
    multiprocess_mode="livemax",
)
# From the queue's own overhead on an idle server (a few ms, bench/jobs.py) to a long
# batch's last item (hours).
JOB_SECONDS_BUCKETS = (
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
    300.0,
    1800.0,
    7200.0,
)
JOB_ITEM_SECONDS = Histogram(
    "imgcdn_job_item_seconds",
    "Time from a job item's enqueue to its finish, by how it ended",
    ["status"],
    buckets=JOB_SECONDS_BUCKETS,
)
JOB_ITEM_WAIT_SECONDS = Histogram(
    "imgcdn_job_item_wait_seconds",
    "Time from a job item's enqueue to its start (queueing)",
    buckets=JOB_SECONDS_BUCKETS,
)
JOB_STATES = ("pending", "running", "succeeded", "failed", "cancelled")
for _state in JOB_STATES:
    JOB_ITEMS.labels(_state)


def job_item_started(waited_s: float) -> None:
    JOB_ITEM_WAIT_SECONDS.observe(max(0.0, waited_s))


def job_item_finished(status: str, seconds: float) -> None:
    JOB_ITEM_SECONDS.labels(status).observe(max(0.0, seconds))


def job_state(counts: dict[str, int], depth: int | None) -> None:
    for state in JOB_STATES:
        JOB_ITEMS.labels(state).set(counts.get(state, 0))
    if depth is not None:
        JOB_QUEUE_DEPTH.set(depth)
