"""The edge: cache tags on image responses, and purging the nginx caches in front of imgcdn.

Every image answer carries `Surrogate-Key` / `Cache-Tag` with its asset's and template's
tags, so a CDN in front can purge by tag. nginx's cache-purge module (Debian ships 2.3)
removes exactly one cache key per call, and nginx.conf keys an entry on
"<format class><request URI>". So while `IMGCDN_EDGE_PURGE_URLS` is set, imgcdn keeps an
index beside the originals (storage documents, shared by every worker and replica): for
each tag, the request URIs it answered with an image. Purging a tag sends, for each of
those URIs, one purge per format class to every edge, then forgets the URIs every edge
answered for. An unreachable edge keeps its URIs indexed for the next purge. Failures are
logged, never raised: imgcdn's own caches are purged either way.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import TypeVar

import aiohttp
import orjson
from yarl import URL

from server.runtime import Runtime
from server.storage.base import Storage

log = logging.getLogger("imgcdn.edge")

FORMAT_CLASSES = ("avif", "webp", "other")  # nginx.conf's $imgcdn_format
TIMEOUT = aiohttp.ClientTimeout(total=2.0)
REMEMBER_TIMEOUT_S = 1.0  # an image answer waits at most this for its index entry
CONCURRENCY = 16
T = TypeVar("T")
R = TypeVar("R")


@dataclass(frozen=True, slots=True)
class Entry:
    name: str  # the index document's name: a digest of the URI
    uri: str  # the request URI as nginx sent it: raw path, then ? and the raw query
    tags: tuple[str, ...]


def asset_tag(asset_id: str) -> str:
    """A header-safe tag for an asset (ids may hold any UTF-8, tags must not)."""
    return "asset:" + hashlib.sha256(asset_id.encode()).hexdigest()[:16]


def template_tag(name: str) -> str:
    return f"template:{name}"  # template names are [a-z0-9_-] already


def tag_headers(asset_id: str, template: str) -> dict[str, str]:
    tags = (asset_tag(asset_id), template_tag(template))
    # Fastly reads space-separated Surrogate-Key; Cloudflare and others comma-separated Cache-Tag.
    return {"Surrogate-Key": " ".join(tags), "Cache-Tag": ",".join(tags)}


async def remember(rt: Runtime, raw_path: str, query: str, asset_id: str, template: str) -> None:
    """Index an image answer's URI under its tags, when edges are configured. Done before the
    answer goes out, so no edge can hold an entry that a purge would not find."""
    if not rt.settings.edge_purge_urls:
        return
    uri = f"{raw_path}?{query}" if query else raw_path
    tags = (asset_tag(asset_id), template_tag(template))
    doc = orjson.dumps({"uri": uri, "tags": list(tags)})
    name = _digest(uri)
    try:
        async with asyncio.timeout(REMEMBER_TIMEOUT_S):
            await asyncio.gather(*(rt.storage.put_doc(_kind(tag), name, doc) for tag in tags))
    except Exception:
        log.warning("edge: could not index %s under %s", uri, tags, exc_info=True)


async def purge(rt: Runtime, tag: str) -> int:
    """Purge every URI indexed under `tag` from every edge; the number of entries removed."""
    edges = rt.settings.edge_purge_urls
    if not edges:
        return 0
    try:
        entries = await _entries(rt.storage, tag)
    except Exception:
        log.warning("edge: could not read the index of %s; nothing purged", tag, exc_info=True)
        return 0
    if not entries:
        return 0
    async with aiohttp.ClientSession(timeout=TIMEOUT) as session:
        results = await asyncio.gather(*(_purge_edge(session, e, entries) for e in edges))
    purged = sum(count for count, _ in results)
    failed = set().union(*(names for _, names in results))
    done = [e for e in entries if e.name not in failed]
    try:
        await _bounded(
            lambda pair: rt.storage.delete_doc(_kind(pair[0]), pair[1].name),
            [(t, e) for e in done for t in e.tags],
        )
    except Exception:
        log.warning("edge: could not forget the purged URIs of %s", tag, exc_info=True)
    log.info("edge: purged %s: %d entries for %d URIs", tag, purged, len(entries))
    return purged


async def _purge_edge(
    session: aiohttp.ClientSession, edge: str, entries: list[Entry]
) -> tuple[int, set[str]]:
    """Purge each entry in each format class from one edge: (entries removed, names failed).
    The first connection failure or timeout marks the edge down for the rest of this purge."""
    purged = 0
    failed: set[str] = set()
    down = False
    base = edge.rstrip("/")

    async def one(job: tuple[Entry, str]) -> None:
        nonlocal purged, down
        entry, fmt = job
        if down:
            failed.add(entry.name)
            return
        try:
            url = URL(f"{base}/{fmt}{entry.uri}", encoded=True)  # nginx keys on the raw URI
            async with session.request("PURGE", url) as response:
                status = response.status
        except (aiohttp.ClientError, TimeoutError) as exc:
            if not down:
                log.warning(
                    "edge: %s unreachable (%r); its purges wait for the next one", edge, exc
                )
            down = True
            failed.add(entry.name)
            return
        if status == 200:
            purged += 1
        elif status != 404:  # 404: nothing cached under that key
            log.warning("edge: %s answered %d to a purge of %s%s", edge, status, fmt, entry.uri)
            failed.add(entry.name)

    await _bounded(one, [(entry, fmt) for entry in entries for fmt in FORMAT_CLASSES])
    return purged, failed


async def _entries(storage: Storage, tag: str) -> list[Entry]:
    kind = _kind(tag)
    names = await storage.list_docs(kind)
    docs = await _bounded(lambda name: storage.get_doc(kind, name), names)
    entries = []
    for name, raw in zip(names, docs, strict=True):
        if raw is None:
            continue  # forgotten by a concurrent purge
        doc = orjson.loads(raw)
        uri, tags = doc.get("uri"), doc.get("tags")
        if isinstance(uri, str) and uri.startswith("/") and isinstance(tags, list):
            entries.append(Entry(name, uri, tuple(str(t) for t in tags)))
    return entries


async def _bounded(work: Callable[[T], Awaitable[R]], items: Iterable[T]) -> list[R]:
    """`work` over `items`, at most CONCURRENCY at a time, results in order."""
    gate = asyncio.Semaphore(CONCURRENCY)

    async def one(item: T) -> R:
        async with gate:
            return await work(item)

    return list(await asyncio.gather(*(one(item) for item in items)))


def _kind(tag: str) -> str:
    return "edge/" + _digest(tag)


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:32]
