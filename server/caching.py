"""In-process caches: a byte-bounded LRU of encoded variants, and single-flight for misses.

Both are touched only from the event loop (cachetools is not thread-safe, and the flights
are asyncio futures), never from render threads.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

from cachetools import LRUCache

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Variant:
    body: bytes
    mime: str
    width: int
    height: int
    asset_id: str = ""  # what purge matches on
    template: str = "_"


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

    def purge(self, asset_id: str | None = None, template: str | None = None) -> int:
        """Drop every variant of an asset, or of a template; the number dropped."""
        doomed = [
            key
            for key, v in self._lru.items()
            if (asset_id is not None and v.asset_id == asset_id)
            or (template is not None and v.template == template)
        ]
        for key in doomed:
            self._lru.pop(key, None)
        return len(doomed)

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

    def __len__(self) -> int:
        return len(self._flights)
