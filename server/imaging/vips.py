"""libvips process policy, and the bounded pool that runs renders off the event loop.

Policy: only allow-listed loaders, untrusted operations blocked, no operation cache (each
render is new work; the cache would only hold memory), one libvips thread per render and
several renders at once, which keeps both cores busier than threaded single renders do
(../shared/bench/BASELINE.md: 4 Python threads x 1 libvips thread was the best layout).

The pool admits `threads` renders at once and `max_queue` more waiting; past that a new
render is refused (429) at once instead of queueing without bound. A render that outlives
the timeout is killed inside libvips (`set_kill`), so its thread comes back promptly.
Its waiting and running renders are the imgcdn_render_queue_depth and
imgcdn_renders_in_flight gauges.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TypeVar

import pyvips

from server import metrics
from server.errors import QueueFull, RenderTimeout

T = TypeVar("T")

ALLOWED_LOADERS = (
    "VipsForeignLoadJpeg",
    "VipsForeignLoadPng",
    "VipsForeignLoadWebp",
    "VipsForeignLoadNsgif",
    "VipsForeignLoadHeif",  # AVIF; HEVC (HEIC) pixels are decoded by pi-heif instead
    "VipsForeignLoadTiff",  # page 0 only (imaging/inspect.py); BMP is decoded by Pillow
)


def configure() -> None:
    """Apply the process-wide libvips policy. Idempotent."""
    pyvips.cache_set_max(0)
    pyvips.concurrency_set(1)
    pyvips.block_untrusted_set(True)
    pyvips.operation_block_set("VipsForeignLoad", True)
    for loader in ALLOWED_LOADERS:
        pyvips.operation_block_set(loader, False)


class Cancel:
    """Handed to a render: it registers the images it builds, and a timeout kills them."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._images: list[pyvips.Image] = []
        self.cancelled = False

    def watch(self, image: pyvips.Image) -> pyvips.Image:
        with self._lock:
            if self.cancelled:
                raise RenderTimeout("render exceeded the time limit")
            image.set_progress(True)  # libvips checks the kill flag from its eval loop
            self._images.append(image)
        return image

    def kill(self) -> None:
        with self._lock:
            self.cancelled = True
            for image in self._images:
                image.set_kill(True)


class RenderPool:
    def __init__(self, threads: int, max_queue: int, timeout_s: float) -> None:
        self.threads = threads
        self.capacity = threads + max_queue
        self.timeout_s = timeout_s
        self.pending = 0  # submitted and not finished (running + queued); read on the loop
        self._executor = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="render")

    async def run(self, job: Callable[[Cancel], T]) -> T:
        """Run `job` in a render thread within the timeout (queue wait included)."""
        if self.pending >= self.capacity:
            raise QueueFull(f"render queue is full ({self.pending} renders pending)")
        loop = asyncio.get_running_loop()
        cancel = Cancel()
        self.pending += 1
        self._report()
        future: Future[T] = self._executor.submit(job, cancel)
        future.add_done_callback(lambda _: loop.call_soon_threadsafe(self._finished))
        try:
            return await asyncio.wait_for(asyncio.wrap_future(future), self.timeout_s)
        except TimeoutError:
            future.cancel()  # still queued: it never starts
            cancel.kill()  # running: libvips stops at its next tile
            raise RenderTimeout(f"render exceeded the {self.timeout_s:g} s limit") from None

    def _finished(self) -> None:
        self.pending -= 1
        self._report()

    def _report(self) -> None:
        metrics.queue(self.queued, self.pending - self.queued)

    @property
    def queued(self) -> int:
        return max(0, self.pending - self.threads)

    def shutdown(self) -> None:
        """Finish in-flight renders, start no queued ones."""
        self._executor.shutdown(wait=True, cancel_futures=True)
