"""The cache levels: a byte-bounded LRU of encoded variants, single-flight for misses, the
shared variant store with its render lock, and the local cache of remote originals.

The in-process ones are touched only from the event loop (cachetools is not thread-safe,
and the flights are asyncio futures), never from render threads.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import heapq
import os
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Generic, TypeVar

import orjson
from cachetools import LRUCache

from server.errors import StorageUnavailable
from server.storage.base import Storage
from server.writebehind import WriteBehind

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Variant:
    body: bytes
    mime: str
    width: int
    height: int
    asset_id: str = ""  # what purge matches on
    template: str = "_"
    faces: int | None = None  # X-Faces: with g=face or blur_faces, how many faces were used


class VariantCache:
    """Encoded variants by variant key, bounded by the sum of their sizes."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._lru: LRUCache[str, Variant] = LRUCache(
            maxsize=max(1, max_bytes), getsizeof=lambda v: len(v.body) + 200
        )

    def get(self, key: str) -> Variant | None:
        return self._lru.get(key)

    def put(self, key: str, variant: Variant) -> None:
        # A variant larger than the whole cache would evict everything and then not fit.
        if self.max_bytes and len(variant.body) + 200 <= self.max_bytes:
            self._lru[key] = variant

    def purge(self, asset_id: str | None = None, template: str | None = None) -> set[str]:
        """Drop every variant of an asset, or of a template; the keys dropped."""
        doomed = [
            key
            for key, v in self._lru.items()
            if (asset_id is not None and v.asset_id == asset_id)
            or (template is not None and v.template == template)
        ]
        for key in doomed:
            self._lru.pop(key, None)
        return set(doomed)

    @property
    def size(self) -> int:
        return int(self._lru.currsize)

    def __len__(self) -> int:
        return len(self._lru)


class SingleFlight(Generic[T]):
    """Identical concurrent calls share one execution: the first starts it, all await it.

    The work runs as its own task, so a caller that goes away (client disconnect) cancels
    only its own wait, never the render others are waiting on."""

    def __init__(self) -> None:
        self._flights: dict[str, asyncio.Future[T]] = {}

    async def do(self, key: str, work: Callable[[], Awaitable[T]]) -> tuple[T, bool]:
        """The result, and whether this caller joined a flight another caller started."""
        flight = self._flights.get(key)
        joined = flight is not None
        if flight is None:
            flight = asyncio.ensure_future(work())
            self._flights[key] = flight
            flight.add_done_callback(lambda done: self._landed(key, done))
        return await asyncio.shield(flight), joined

    def _landed(self, key: str, flight: asyncio.Future[T]) -> None:
        if self._flights.get(key) is flight:
            del self._flights[key]
        if not flight.cancelled():
            flight.exception()  # retrieved: with every waiter gone, nobody else would

    async def settle(self) -> None:
        """Wait until no flight is left (shutdown: each hands its store write over)."""
        while self._flights:  # bounded: a stopping server starts no new requests
            await asyncio.wait(set(self._flights.values()))

    def __len__(self) -> int:
        return len(self._flights)


TRIM_LOCK = "variant-store-trim"


async def oldest(entries: AsyncIterator[tuple[str, int, float]], excess: int) -> list[str]:
    """The keys of the least recently written entries that add up to at least `excess`
    bytes. Holds only those: a heap with the newest of them on top, dropped as soon as the
    older ones cover `excess` without it."""
    heap: list[tuple[float, int, str]] = []  # (-mtime, size, key)
    held = 0
    async for key, size, mtime in entries:
        heapq.heappush(heap, (-mtime, size, key))
        held += size
        while heap and held - heap[0][1] >= excess:
            held -= heapq.heappop(heap)[1]
    return [key for _, _, key in sorted(heap, reverse=True)]


class VariantStore:
    """Encoded variants in Storage, shared by every worker and replica, and the render lock
    that lets one of them render a cold variant while the others wait for it.

    Keys: `variants/<sha256(asset id)[:16]>/<template>/<variant key>`, so purging an asset is
    one prefix; the render lock is the storage's (`Storage.lock`). A render is answered
    before it is stored: the write, then the unlock, follow the response (`writes`)."""

    def __init__(self, storage: Storage, enabled: bool, max_bytes: int = 0) -> None:
        self.storage = storage
        self.enabled = enabled
        self.max_bytes = max_bytes  # 0: unbounded (an S3 lifecycle rule bounds it instead)
        self.writes = WriteBehind()  # what follows responses: put_then_unlock

    async def trim(self) -> int:
        """Delete the least recently written variants until the store is within max_bytes
        (down to 90 %, so trims are not back to back); the number deleted.

        One process trims at a time (the others skip that minute), and the store is read
        twice as a stream: first its total, then only the oldest entries that must go. A
        listing of the whole store held in every worker each minute grew each worker's RSS
        by ~10 MB per 10,000 variants stored (bench/run.py --only memory --growth 51000)."""
        if not self.enabled or not self.max_bytes:
            return 0
        if not await self.storage.lock(TRIM_LOCK, 600):
            return 0
        try:
            total = 0
            async for _, size, _ in self.storage.scan_sizes("variants/"):
                total += size
            if total <= self.max_bytes:
                return 0
            excess = total - int(self.max_bytes * 0.9)
            victims = await oldest(self.storage.scan_sizes("variants/"), excess)
            for key in victims:
                await self.storage.delete_object(key)
            return len(victims)
        finally:
            await self.storage.unlock(TRIM_LOCK)

    @staticmethod
    def _asset_prefix(asset_id: str) -> str:
        return f"variants/{hashlib.sha256(asset_id.encode()).hexdigest()[:16]}/"

    def _path(self, asset_id: str, template: str, key: str) -> str:
        return f"{self._asset_prefix(asset_id)}{template}/{key}"

    async def get(self, asset_id: str, template: str, key: str) -> Variant | None:
        if not self.enabled:
            return None
        raw = await self.storage.get_object(self._path(asset_id, template, key))
        if raw is None or len(raw) < 4:
            return None
        size = int.from_bytes(raw[:4], "big")
        header = orjson.loads(raw[4 : 4 + size])
        return Variant(body=raw[4 + size :], **header)

    async def put(self, key: str, variant: Variant) -> None:
        if not self.enabled:
            return
        header = orjson.dumps(
            {
                "mime": variant.mime,
                "width": variant.width,
                "height": variant.height,
                "asset_id": variant.asset_id,
                "template": variant.template,
                **({"faces": variant.faces} if variant.faces is not None else {}),
            }
        )
        blob = len(header).to_bytes(4, "big") + header + variant.body
        await self.storage.put_object(self._path(variant.asset_id, variant.template, key), blob)

    async def put_then_unlock(self, key: str, variant: Variant) -> None:
        """Store a variant just rendered under the render lock, then release the lock: after
        the response (see writebehind.py). The lock is held until the variant is in the
        store, so another process polling for it finds it there and renders nothing."""
        if self.enabled:
            await self.writes.submit(
                len(variant.body),
                lambda: self._put_then_unlock(key, variant),
                f"variant store write of {key}",
            )

    async def _put_then_unlock(self, key: str, variant: Variant) -> None:
        try:
            await self.put(key, variant)
        finally:
            # An S3 lock that cannot be deleted expires after its ttl (counted in
            # imgcdn_storage_errors_total); what matters here is the write.
            with contextlib.suppress(StorageUnavailable):
                await self.unlock(key)

    async def lock(self, key: str, ttl_s: float) -> bool:
        """Take the render lock for `key`, or False while another process renders it."""
        return not self.enabled or await self.storage.lock(f"render-{key}", ttl_s)

    async def unlock(self, key: str) -> None:
        if self.enabled:
            await self.storage.unlock(f"render-{key}")

    async def purge(self, asset_id: str | None = None, template: str | None = None) -> set[str]:
        """Delete stored variants of an asset or a template; their variant keys."""
        if not self.enabled:
            return set()
        await self.writes.settle()  # a write still pending would put a variant back
        if asset_id is not None:
            keys = await self.storage.list_keys(self._asset_prefix(asset_id), limit=1_000_000)
        else:
            every = await self.storage.list_keys("variants/", limit=10_000_000)
            keys = [k for k in every if k.split("/")[2:3] == [template]]
        for key in keys:
            await self.storage.delete_object(key)
        return {key.rsplit("/", 1)[-1] for key in keys}


class OriginalsCache:
    """Originals fetched from remote storage, kept on local disk by etag, bounded in bytes
    (least recently read go first). Blocking file work runs in threads."""

    def __init__(self, folder: Path, max_bytes: int) -> None:
        self.folder = folder
        self.max_bytes = max_bytes
        folder.mkdir(parents=True, exist_ok=True)
        self._sizes = {p.name: p.stat().st_size for p in folder.iterdir() if p.is_file()}

    async def get(self, etag: str) -> bytes | None:
        if etag not in self._sizes:
            return None

        def read() -> bytes | None:
            path = self.folder / etag
            try:
                data = path.read_bytes()
                os.utime(path)  # recently used: evicted last
            except FileNotFoundError:
                return None
            # Content-addressed: the name is the hash, so a torn or tampered file shows.
            return data if hashlib.sha256(data).hexdigest() == etag else None

        data = await asyncio.to_thread(read)
        if data is None:
            self._sizes.pop(etag, None)
        return data

    async def put(self, etag: str, data: bytes) -> None:
        if len(data) > self.max_bytes or etag in self._sizes:
            return
        await asyncio.to_thread(self._write, etag, data)
        self._sizes[etag] = len(data)
        if sum(self._sizes.values()) > self.max_bytes:
            await asyncio.to_thread(self._evict)

    def _write(self, etag: str, data: bytes) -> None:
        fd, tmp = tempfile.mkstemp(dir=self.folder, prefix=".tmp-")
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, self.folder / etag)

    def _evict(self) -> None:
        files = sorted(
            (p for p in self.folder.iterdir() if p.is_file() and not p.name.startswith(".tmp-")),
            key=lambda p: p.stat().st_mtime,
        )
        total = sum(self._sizes.values())
        for path in files:
            if total <= self.max_bytes * 0.9:
                break
            total -= self._sizes.pop(path.name, 0)
            path.unlink(missing_ok=True)
