"""Variants: from (asset, template, spec, Accept) to encoded bytes, through the caches.

The variant key hashes the asset id, the source etag, the template's name and version
(and its watermark asset's etag), and the canonical effective transform for the chosen
format. Equal URLs share an entry; a new upload, template version or `v` is a new entry
everywhere. The key is known before any source byte is read, which is what lets a
revalidation answer 304 without fetching or rendering.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import time
from dataclasses import dataclass, field
from pathlib import Path

from server import formats, metrics
from server.assets import get_meta, get_meta_or_stale
from server.caching import Variant
from server.errors import (
    AssetNotFound,
    ImgcdnError,
    StorageUnavailable,
    TooLarge,
    Undecodable,
)
from server.imaging import pipeline
from server.imaging.inspect import SourceInfo
from server.imaging.vips import Cancel
from server.runtime import Runtime
from server.spec import Format, TransformSpec
from server.storage.base import AssetMeta
from server.templates import Template


@dataclass(frozen=True, slots=True)
class Resolved:
    meta: AssetMeta
    template: Template
    mark: AssetMeta | None  # the template's watermark asset
    fmt: Format
    negotiated: bool
    key: str
    stale: bool = False  # metadata came from memory because storage failed


@dataclass
class Timings:
    """Milliseconds per phase, for Server-Timing."""

    phases: dict[str, float] = field(default_factory=dict)

    def add(self, name: str, started: float) -> None:
        self.phases[name] = self.phases.get(name, 0.0) + (time.perf_counter() - started) * 1000


def variant_key(asset_id: str, source_etag: str, canonical: str) -> str:
    digest = hashlib.sha256(f"{asset_id}\0{source_etag}\0{canonical}".encode()).digest()
    return base64.urlsafe_b64encode(digest[:18]).decode()


async def resolve(
    rt: Runtime,
    asset_id: str,
    template: Template,
    spec: TransformSpec,
    accept: str,
    timings: Timings,
) -> Resolved:
    started = time.perf_counter()
    meta, stale = await get_meta_or_stale(rt, asset_id)
    mark = None
    if template.watermark is not None and template.watermark.asset is not None:
        try:
            mark = await get_meta(rt, template.watermark.asset)
        except AssetNotFound:
            raise ImgcdnError(
                f"template {template.name!r} names watermark asset "
                f"{template.watermark.asset!r}, which does not exist"
            ) from None
    timings.add("meta", started)
    kind = _source_info(meta).output_kind
    fmt, negotiated = formats.choose(spec, kind, meta.alpha, meta.frames, accept)
    canonical = "&".join(
        [
            f"t={template.name}@{template.version}",
            f"wm={mark.etag if mark else '-'}",
            spec.canonical(fmt),
        ]
    )
    key = variant_key(asset_id, meta.etag, canonical)
    return Resolved(meta, template, mark, fmt, negotiated, key, stale)


async def purge(rt: Runtime, asset_id: str | None = None, template: str | None = None) -> int:
    """Drop cached variants of an asset or a template from memory and the shared store."""
    if asset_id is not None:
        rt.meta_cache.pop(asset_id, None)
    dropped = rt.variants.purge(asset_id=asset_id, template=template)
    dropped |= await rt.store.purge(asset_id=asset_id, template=template)
    return len(dropped)  # distinct variants: memory and store hold the same ones


async def fetch(
    rt: Runtime, resolved: Resolved, spec: TransformSpec, timings: Timings
) -> tuple[Variant, str]:
    """The variant's bytes and where they came from: `hit-memory`, `hit-store` or `miss`
    (`stale` when storage is down and memory still holds it)."""
    cached = rt.variants.get(resolved.key)
    if cached is not None:
        metrics.cache_hit("memory")
        return cached, "stale" if resolved.stale else "hit-memory"

    async def work() -> tuple[Variant, str]:
        if resolved.stale:
            # Storage is down: skip the store, and render only if the original is in the
            # local originals cache (read_source raises 503 otherwise).
            return await _render(rt, resolved, spec, timings), "stale"
        return await _from_store_or_render(rt, resolved, spec, timings)

    (variant, source), joined = await rt.flights.do(resolved.key, work)
    if joined:
        metrics.coalesced()
    elif source == "hit-store":
        metrics.cache_hit("store")
    else:
        metrics.cache_miss()
    rt.variants.put(resolved.key, variant)
    return variant, source


async def _from_store_or_render(
    rt: Runtime, resolved: Resolved, spec: TransformSpec, timings: Timings
) -> tuple[Variant, str]:
    """One process's miss: the shared store, else render under the cross-process lock, so
    N cold requests spread over workers and replicas render once. A process that finds the
    lock taken waits for the store to fill, up to the render timeout, then renders itself."""
    meta, template, key = resolved.meta, resolved.template.name, resolved.key
    started = time.perf_counter()
    stored = await rt.store.get(meta.id, template, key)
    timings.add("store", started)
    if stored is not None:
        return stored, "hit-store"
    deadline = time.monotonic() + rt.settings.render_timeout_s
    delay = 0.02
    # The holder renders, answers, then stores (an S3 PUT of up to IMGCDN_S3_TIMEOUT_S)
    # before it lets go: a lock younger than that is not a dead holder's.
    ttl = rt.settings.render_timeout_s + rt.settings.s3_timeout_s + 5
    while not await rt.store.lock(key, ttl):
        if time.monotonic() > deadline:
            break  # the holder is slow or gone: render rather than fail
        await asyncio.sleep(delay)  # polling storage, which has no change notifications
        delay = min(delay * 2, 0.5)
        stored = await rt.store.get(meta.id, template, key)
        if stored is not None:
            return stored, "hit-store"
    try:
        # Look again under the lock: a holder may have stored it and let go since our look.
        stored = await rt.store.get(meta.id, template, key)
        variant = stored or await _render(rt, resolved, spec, timings)
    except BaseException:
        await rt.store.unlock(key)
        raise
    if stored is not None:
        await rt.store.unlock(key)
        return stored, "hit-store"
    # Answer now; the store write and then the unlock follow the response. Waiters in this
    # process get these bytes from the flight, waiters elsewhere from the store.
    await rt.store.put_then_unlock(key, variant)
    return variant, "miss"


def _local_source(rt: Runtime, meta: AssetMeta) -> Path | None:
    """The original's file when storage is local: libvips reads it itself, without a copy
    into Python (bench/run.py: the 2.5 MB read and its page faults cost ~4 % of a render)."""
    path = rt.storage.local_path(meta)
    if path is None:
        return None
    if meta.bytes > rt.settings.max_source_bytes:
        raise TooLarge(f"source is larger than {rt.settings.max_source_bytes} bytes")
    metrics.source_read()
    return path


async def read_source(rt: Runtime, meta: AssetMeta) -> bytes:
    metrics.source_read()
    if rt.originals is not None:
        cached = await rt.originals.get(meta.etag)
        if cached is not None:
            metrics.cache_hit("originals")
            return cached
    try:
        data = await rt.storage.get(meta, rt.settings.max_source_bytes)
    except AssetNotFound:
        # Replaced between our metadata read and now: read the new metadata next time.
        rt.meta_cache.pop(meta.id, None)
        raise
    if rt.originals is not None:
        await rt.originals.put(meta.etag, data)
    return data


async def _render(
    rt: Runtime, resolved: Resolved, spec: TransformSpec, timings: Timings
) -> Variant:
    meta = resolved.meta
    started = time.perf_counter()
    source = _local_source(rt, meta) or await read_source(rt, meta)
    mark_source = await read_source(rt, resolved.mark) if resolved.mark else None
    timings.add("fetch", started)
    info = _source_info(meta)
    options = rt.render_options
    queued = time.perf_counter()
    watermark = resolved.template.watermark

    def job(cancel: Cancel) -> pipeline.Rendered:
        timings.add("queue", queued)
        began = time.perf_counter()
        try:
            out = pipeline.render(
                source,
                info,
                spec,
                resolved.fmt,
                options,
                cancel,
                watermark,
                mark_source,
                source_key=("variant-source", meta.id, meta.etag),
            )
        except Undecodable:
            if not isinstance(source, Path):
                raise
            # It decoded at upload, so the file went away (replaced or deleted since our
            # metadata read) or the disk failed.
            if not source.exists():
                rt.meta_cache.pop(meta.id, None)
                raise AssetNotFound(meta.id) from None
            metrics.storage_error("get")
            raise StorageUnavailable("the original cannot be read from storage") from None
        timings.add("render", began)
        metrics.render_observed(resolved.fmt, time.perf_counter() - began)
        return out

    rendered = await rt.pool.run(job)
    return Variant(
        body=rendered.body,
        mime=formats.MIME[resolved.fmt],
        width=rendered.width,
        height=rendered.height,
        asset_id=meta.id,
        template=resolved.template.name,
        faces=rendered.faces,
    )


def _source_info(meta: AssetMeta) -> SourceInfo:
    return SourceInfo(
        kind=meta.kind,
        mime=meta.mime,
        width=meta.width,
        height=meta.height,
        frames=meta.frames,
        alpha=meta.alpha,
        palette=meta.palette,
        orientation=meta.orientation,
    )
