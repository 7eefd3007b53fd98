"""Writes made after the response that caused them: the variant store's, so a cold render
is answered as soon as it is encoded, not after a file is written, fsynced and renamed (or
an S3 PUT has returned).

Bounded: while MAX_PENDING writes or MAX_PENDING_BYTES bytes are in flight (storage slower
than rendering), the next write is made before its response instead, as every write was
before. That is backpressure, not a growing queue; and no write is ever dropped, because a
variant left out of the store would be rendered again by every process waiting for it.
A write that fails is logged and counted, and no client sees it: the variant is rendered
again on its next miss. Shutdown drains what is pending (Runtime's exit stack).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from server import metrics
from server.errors import StorageUnavailable

log = logging.getLogger("imgcdn")

# A local write takes ~1-3 ms and a render ~20-100 ms, so a handful are ever in flight;
# these bounds are met only when storage stalls (an S3 PUT up to IMGCDN_S3_TIMEOUT_S).
MAX_PENDING = 32
MAX_PENDING_BYTES = 64 * 1024 * 1024


class WriteBehind:
    """Runs writes as tasks of their own, at most `max_pending` (and `max_bytes`) at once."""

    def __init__(self, max_pending: int = MAX_PENDING, max_bytes: int = MAX_PENDING_BYTES) -> None:
        self.max_pending = max_pending
        self.max_bytes = max_bytes
        self.pending_bytes = 0
        self._tasks: set[asyncio.Task[None]] = set()
        self._draining = False

    async def submit(self, size: int, write: Callable[[], Awaitable[None]], what: str) -> None:
        """Start `write` (of `size` bytes) and return at once; or, past the bounds or once
        draining has begun, make it now and return when it is done. Never raises for it."""
        full = len(self._tasks) >= self.max_pending or self.pending_bytes + size > self.max_bytes
        if full or self._draining:
            await _guarded(write, what)
            return
        task = asyncio.create_task(_guarded(write, what))
        self._tasks.add(task)
        self.pending_bytes += size
        task.add_done_callback(lambda done: self._landed(done, size))

    def _landed(self, task: asyncio.Task[None], size: int) -> None:
        self._tasks.discard(task)
        self.pending_bytes -= size

    async def settle(self) -> None:
        """Wait for the writes pending now (a purge must not be followed by one of them)."""
        if self._tasks:
            await asyncio.wait(set(self._tasks))

    async def drain(self) -> None:
        """Wait for every pending write; from here on, writes are made before responses."""
        self._draining = True
        while self._tasks:  # bounded: no task is added once draining
            await asyncio.wait(set(self._tasks))

    def __len__(self) -> int:
        return len(self._tasks)


async def _guarded(write: Callable[[], Awaitable[None]], what: str) -> None:
    try:
        await write()
    except Exception as exc:  # any failure: the response was (or will be) sent regardless
        metrics.store_write_failed()
        expected = isinstance(exc, StorageUnavailable | OSError)  # else a bug: its traceback
        log.warning(
            "%s failed; rendered again on its next miss: %s",
            what,
            str(exc) or repr(exc),
            exc_info=not expected,
        )
