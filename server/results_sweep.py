"""The sweep of expired processing results (SPEC §6: "kept until then and swept after").

Every worker runs `sweep_forever`; one pass runs at a time across all of them (the storage
lock `results-sweep`), and each result is deleted under its own lock, which saves and
renewals take too, so a result being written again is never deleted under its writer.

A pass streams the listing folder by folder (`results/<id[:2]>/`) and reads the metadata
only of results whose metadata was last written more than a TTL ago: the others cannot
have expired. Bytes with no metadata beside them for ORPHAN_AGE_S (a save that crashed
between its two writes) go too. At most `limit` deletions a pass.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Iterator
from typing import TYPE_CHECKING

from server import metrics, results
from server.errors import StorageUnavailable
from server.routes import correction_tasks

if TYPE_CHECKING:
    from server.runtime import Runtime

log = logging.getLogger("imgcdn")

SWEEP_LOCK = "results-sweep"
EVERY_S = 60.0
MAX_DELETES = 1000
# Far above the few storage calls between a save's two writes, so bytes are never taken
# for stray while their metadata is on its way.
ORPHAN_AGE_S = 600.0

Entry = tuple[str, int, float]  # (key, bytes, modified unix time), as scan_sizes gives


async def sweep(rt: Runtime, now: float | None = None, limit: int = MAX_DELETES) -> int:
    """One pass: delete what has expired at `now` (default: the clock); the number of
    results (and stray bytes) deleted. 0 when another process is sweeping."""
    at = results.clock() if now is None else now
    if not await rt.storage.lock(SWEEP_LOCK, 600):
        return 0
    deleted = 0
    try:
        async for group in _folders(rt.storage.scan_sizes(results.PREFIX)):
            for result_id in _candidates(group, at, rt.settings.result_ttl_s):
                if deleted >= limit:
                    return deleted
                if await _delete_if_dead(rt, result_id, at):
                    deleted += 1
        return deleted
    finally:
        await rt.storage.unlock(SWEEP_LOCK)
        if deleted:
            metrics.results_swept(deleted)


async def sweep_forever(rt: Runtime, every_s: float = EVERY_S) -> None:
    while True:
        try:
            deleted = await sweep(rt)
            if deleted:
                log.info("results: swept %d expired results", deleted)
            # Seed 003's task records live as long as their results (one TTL).
            tasks = await correction_tasks.sweep(rt, results.clock(), MAX_DELETES)
            if tasks:
                log.info("results: swept %d expired correction task files", tasks)
        except StorageUnavailable:
            log.warning("results: storage unavailable, sweep skipped")
        await asyncio.sleep(every_s)


def start(rt: Runtime, stack: contextlib.AsyncExitStack) -> None:
    """Run the sweep in the background until the app stops."""
    task = asyncio.create_task(sweep_forever(rt))
    stack.callback(task.cancel)


async def _folders(scan: AsyncIterator[Entry]) -> AsyncIterator[list[Entry]]:
    """The scan's entries grouped by folder: both backends list a folder's files together
    (S3 in key order, the local folder one directory at a time)."""
    group: list[Entry] = []
    folder = None
    async for entry in scan:
        here = entry[0].rpartition("/")[0]
        if here != folder and group:
            yield group
            group = []
        folder = here
        group.append(entry)
    if group:
        yield group


def _candidates(group: list[Entry], now: float, ttl: int) -> Iterator[str]:
    metas: dict[str, float] = {}
    blobs: dict[str, float] = {}
    for key, _, modified in group:
        result_id, _, ext = key.rpartition("/")[2].rpartition(".")
        if ext == "json":
            metas[result_id] = modified
        elif ext == "bin":
            blobs[result_id] = modified
    # Written more than a TTL ago: maybe expired (a renewal rewrites the metadata).
    yield from (i for i, modified in metas.items() if modified + ttl <= now)
    yield from (
        i for i, modified in blobs.items() if i not in metas and modified + ORPHAN_AGE_S <= now
    )


async def _delete_if_dead(rt: Runtime, result_id: str, now: float) -> bool:
    """Delete one result if it has expired, or its bytes if they have no metadata; under
    its lock, skipped while a writer holds it. Metadata first: a reader then sees no result
    rather than metadata without bytes."""
    name = f"result-{result_id}"
    if not await rt.storage.lock(name, results.LOCK_TTL_S):
        return False
    try:
        bytes_key, meta_key = results.object_keys(result_id)
        raw = await rt.storage.get_object(meta_key, max_bytes=4096)
        if raw is not None:
            found = results.parse_meta(result_id, raw)
            if found is not None and found.expires_at > now:
                return False
            await rt.storage.delete_object(meta_key)
        await rt.storage.delete_object(bytes_key)
        rt.results.metas.pop(result_id, None)
        return True
    finally:
        await rt.storage.unlock(name)
