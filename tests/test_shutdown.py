"""SIGTERM under load (issue #10), on a real `imgcdn serve`: the renders in flight and queued
finish and are stored, new connections are refused at once, and the process exits 0 within
IMGCDN_RENDER_TIMEOUT_S + 5 s. With one worker and with two."""

from __future__ import annotations

import asyncio
import signal
import time
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import httpx2 as httpx
import pytest
from conftest import IMAGES, decode, wait_until
from test_metrics import scrape
from test_server import Served, serving

from server.caching import VariantStore
from server.storage.local import LocalStorage

RENDER_TIMEOUT_S = 20
# A 3200 x 2400 blurred JPEG from the 800 x 600 photo: ~0.4 s of libvips on the development
# machine. One render thread per worker, so every request after the first of a worker
# waits in its queue: SIGTERM arrives with renders both running and queued.
SLOW = "w=3200&enlarge=1&blur=20&fmt=jpeg"
REQUESTS_PER_WORKER = 4


def pending_renders(served: Served) -> float:
    """Renders running or queued, over every worker (the gauges are summed across them)."""
    with httpx.Client(base_url=served.base, timeout=10) as fresh:
        scraped = scrape(fresh)
    return scraped.value("imgcdn_renders_in_flight") + scraped.value("imgcdn_render_queue_depth")


def refused(base: str) -> bool:
    """True once a new connection is refused; an answer, or a connection left waiting for
    one, is not a refusal."""
    try:
        httpx.get(f"{base}/healthz", timeout=1)
    except httpx.ConnectError:
        return True
    except httpx.TransportError:
        return False
    return False


@pytest.mark.parametrize("workers", [1, 2])
def test_sigterm_finishes_every_render_in_flight_refuses_new_connections_and_exits_0(
    tmp_path: Path, workers: int
):
    count = REQUESTS_PER_WORKER * workers
    urls = [f"/t/_/photo.jpg?{SLOW}&v=s{i}" for i in range(count)]  # v: distinct variants
    settings = {
        "IMGCDN_RENDER_THREADS": "1",
        "IMGCDN_RENDER_TIMEOUT_S": str(RENDER_TIMEOUT_S),
        "IMGCDN_MEMORY_CACHE_BYTES": "0",
    }
    with serving(tmp_path, "--workers", str(workers), **settings) as served:
        auth = {"Authorization": f"Bearer {served.token}"}
        body = (IMAGES / "photo.jpg").read_bytes()
        put = httpx.put(f"{served.base}/v1/assets/photo.jpg", content=body, headers=auth)
        assert put.status_code == 201, put.text

        with ThreadPoolExecutor(count) as pool:
            # Each on its own connection, as separate clients would be.
            answers: list[Future[httpx.Response]] = [
                pool.submit(httpx.get, served.base + url, timeout=60) for url in urls
            ]
            wait_until(lambda: pending_renders(served) == count)
            served.process.send_signal(signal.SIGTERM)
            signalled = time.monotonic()
            wait_until(lambda: refused(served.base), seconds=5)
            unanswered_when_refused = sum(not a.done() for a in answers)
            responses = [a.result(timeout=RENDER_TIMEOUT_S + 5) for a in answers]
        code = served.process.wait(timeout=RENDER_TIMEOUT_S + 5)
        stopped_in = time.monotonic() - signalled
        log = served.log()

    # New work was refused while the old was still being done...
    assert unanswered_when_refused > 0
    # ...and every request that had arrived got its image, whole.
    for r in responses:
        assert r.status_code == 200, r.text
        assert r.headers["content-type"] == "image/jpeg"
        image = decode(r.content)
        assert (image.width, image.height) == (3200, 2400)
    assert code == 0, log
    assert stopped_in < RENDER_TIMEOUT_S + 5
    assert "Cancel" not in log  # uvicorn's "Cancel N running task(s)": none was cut short
    assert "Traceback" not in log
    # The variant store has every variant rendered during the stop, as served.
    store = VariantStore(LocalStorage(served.data_dir), enabled=True)
    for r in responses:
        stored = asyncio.run(store.get("photo.jpg", "_", r.headers["etag"].strip('"')))
        assert stored is not None
        assert stored.body == r.content
