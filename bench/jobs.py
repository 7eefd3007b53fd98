"""Jobs (issue #12): a batch's throughput against the cold rate of the same work through
`POST /v1/image/process`, and the queue's own overhead per item, embedded and on Redis.

    python bench/jobs.py [--items 200] [--concurrency 8] [--backend embedded|redis|both]
    (one JSON line per backend; bench/run.py --only jobs runs it)

Each backend gets a fresh `imgcdn serve --workers 2` (and, for redis, a redis-server child
with AOF on, as the docs advise). Every item must be a render: the result store keeps one
result per input and ops, so 2 x N distinct 12 MP JPEGs are uploaded as assets first (the
corpus photo with a counter in a COM segment: same pixels, same work, distinct bytes);
N are processed one request each, at `--concurrency` connections, the other N are one batch.

- throughput: items/s of the batch (submit to the status saying `completed`, polled every
  50 ms) over requests/s of the process run; target >= 0.9.
- overhead: on the idle server, 40 one-item batches of a 64 px JPEG one after another;
  the median of `imgcdn_job_item_wait_seconds` (enqueue -> start) over those 40 from
  /metrics (a bucket bound: an upper bound), and the client's submit -> completed time
  (status polled every 2 ms) beside the same item's `POST /v1/image/process` time.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import processing
from run import Imgcdn, free_port, http, imgcdn, stop, wait_until

ROOT = Path(__file__).resolve().parent.parent
SMALL = ROOT / "tests" / "images" / "photo.jpg"
OPS = processing.OPS


def redis_server(folder: Path) -> Iterator[str]:
    port = free_port()
    exe = shutil.which("redis-server") or "/usr/bin/redis-server"
    args = [exe, "--port", str(port), "--bind", "127.0.0.1", "--dir", str(folder)]
    args += ["--save", "", "--appendonly", "yes", "--appendfsync", "everysec"]
    process = subprocess.Popen(  # noqa: S603 - Debian's redis-server
        args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )

    def answers() -> bool:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as conn:
            conn.sendall(b"PING\r\n")
            return conn.recv(16).startswith(b"+PONG")

    try:
        wait_until(answers, "redis-server")
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        stop(process)


class Client:
    def __init__(self, server: Imgcdn) -> None:
        self.base = server.base
        token = (server.data / "admin-token").read_text().strip()
        self.auth = {"Authorization": f"Bearer {token}"}

    def json(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        data = json.dumps(body).encode() if body is not None else None
        headers = {**self.auth, "Content-Type": "application/json"}
        status, _, raw = http(self.base + path, method, data, headers)
        return status, json.loads(raw) if raw else None

    def upload(self, asset_id: str, data: bytes) -> None:
        status, _, body = http(f"{self.base}/v1/assets/{asset_id}", "PUT", data, self.auth)
        if status not in (200, 201):
            raise RuntimeError(f"upload {asset_id}: {status} {body[:200]!r}")


def distinct_photos(client: Client, tag: str, count: int) -> list[str]:
    ids = []
    for n in range(count):
        asset_id = f"bench-{tag}-{n:04d}.jpg"
        client.upload(asset_id, processing.jpeg_with_com(f"{tag}-{n:08d}".encode()))
        ids.append(asset_id)
    return ids


def process_rate(client: Client, ids: list[str], concurrency: int) -> float:
    def one(asset_id: str) -> None:
        status, body = client.json(
            "POST", "/v1/image/process", {"image": {"id": asset_id}, "ops": OPS}
        )
        if status != 200:
            raise RuntimeError(f"process {asset_id}: {status} {body}")

    started = time.monotonic()
    with ThreadPoolExecutor(concurrency) as pool:
        list(pool.map(one, ids))
    return len(ids) / (time.monotonic() - started)


def run_batch(
    client: Client, items: list[dict[str, Any]], poll_s: float = 0.05
) -> tuple[float, dict[str, Any]]:
    started = time.monotonic()
    status, job = client.json("POST", "/v1/image/batch/submit", {"items": items})
    if status != 202:
        raise RuntimeError(f"submit: {status} {job}")
    deadline = started + 60 + 5 * len(items)
    while True:
        status, state = client.json("GET", f"/v1/image/batch/status/{job['id']}")
        if status == 200 and state["status"] in ("completed", "cancelled"):
            return time.monotonic() - started, state
        if time.monotonic() > deadline:
            raise RuntimeError(f"batch not completed in time: {state}")
        time.sleep(poll_s)  # polling the status, with a deadline


def histogram(server: Imgcdn, name: str) -> dict[float, float]:
    """A /metrics histogram's cumulative buckets, summed over the workers."""
    text = http(server.base + "/metrics")[2].decode()
    buckets: dict[float, float] = {}
    for line in text.splitlines():
        if line.startswith(f"{name}_bucket{{"):
            bound = line.split('le="', 1)[1].split('"', 1)[0]
            le = float("inf") if bound == "+Inf" else float(bound)
            buckets[le] = buckets.get(le, 0.0) + float(line.rsplit(" ", 1)[1])
    return buckets


def median_between(before: dict[float, float], after: dict[float, float]) -> float | None:
    """The bucket bound holding the median of what was observed between two snapshots."""
    delta = {le: n - before.get(le, 0.0) for le, n in after.items()}
    if not delta or delta[max(delta)] <= 0:
        return None
    total = delta[max(delta)]
    return next(le for le in sorted(delta) if delta[le] >= total / 2)


def measure(backend: str, items: int, concurrency: int, job_slots: int) -> dict[str, Any]:
    with contextlib.ExitStack() as stack:
        settings: dict[str, str] = {}
        if job_slots:
            settings["IMGCDN_JOB_CONCURRENCY"] = str(job_slots)
        if backend == "redis":
            folder = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="redis-")))
            settings["IMGCDN_REDIS_URL"] = stack.enter_context(
                contextlib.contextmanager(redis_server)(folder)
            )
        server = stack.enter_context(imgcdn(**settings))
        client = Client(server)
        for_process = distinct_photos(client, "p", items)
        for_batch = distinct_photos(client, "b", items)
        rate = process_rate(client, for_process, concurrency)
        renders = server.renders()
        elapsed, state = run_batch(client, [{"image": {"id": i}, "ops": OPS} for i in for_batch])
        succeeded = sum(1 for r in state["results"] if r["status"] == "succeeded")
        batch_rate = items / elapsed
        rendered = server.renders() - renders
        # Overhead: one small item at a time on the idle server.
        client.upload("bench-small.jpg", SMALL.read_bytes())
        small_ops = [{"op": "resize", "params": {"width": 64}}]
        direct, through_batch = [], []
        waits = histogram(server, "imgcdn_job_item_wait_seconds")
        for n in range(40):
            ops = [*small_ops, {"op": "compress", "params": {"quality": 50 + n}}]
            t = time.monotonic()
            status, body = client.json(
                "POST", "/v1/image/process", {"image": {"id": "bench-small.jpg"}, "ops": ops}
            )
            if status != 200:
                raise RuntimeError(f"process of the small item: {status} {body}")
            direct.append(time.monotonic() - t)
            ops = [*small_ops, {"op": "compress", "params": {"quality": 50 + n, "format": "webp"}}]
            through_batch.append(
                run_batch(client, [{"image": {"id": "bench-small.jpg"}, "ops": ops}], 0.002)[0]
            )
        wait = median_between(waits, histogram(server, "imgcdn_job_item_wait_seconds"))
        return {
            "backend": backend,
            "job_concurrency": job_slots or "default",
            "items": items,
            "process_rps": round(rate, 2),
            "batch_items_per_s": round(batch_rate, 2),
            "x_process": round(batch_rate / rate, 3),
            "succeeded": succeeded,
            "renders": rendered,
            "queue_wait_median_ms": None if wait is None else round(1000 * wait, 2),
            "small_item_process_ms": round(1000 * statistics.median(direct), 2),
            "small_item_batch_ms": round(1000 * statistics.median(through_batch), 2),
        }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--items", type=int, default=200)
    ap.add_argument("--concurrency", type=int, default=8)
    ap.add_argument("--backend", choices=("embedded", "redis", "both"), default="both")
    ap.add_argument(
        "--job-concurrency",
        default="0",
        help="IMGCDN_JOB_CONCURRENCY values, e.g. 0,2 (0: default)",
    )
    a = ap.parse_args()
    backends = ("embedded", "redis") if a.backend == "both" else (a.backend,)
    for backend in backends:
        for slots in (int(v) for v in a.job_concurrency.split(",")):
            print(json.dumps(measure(backend, a.items, a.concurrency, slots)), flush=True)


if __name__ == "__main__":
    os.environ.setdefault("IMGCDN_LOG_LEVEL", "warning")
    sys.exit(main())
