"""Variants: from (asset, spec, Accept) to encoded bytes, through the caches and one render.

The variant key is a hash of the asset id, the source etag and the canonical effective
transform for the chosen format, so equal URLs share an entry, and a new upload or a new
`v` is a new entry everywhere. The key is known before any source byte is read, which is
what lets a revalidation answer 304 without fetching or rendering.
"""

from __future__ import annotations

import base64
import hashlib
import time
from dataclasses import dataclass, field

from server import formats
from server.assets import get_meta
from server.caching import Variant
from server.errors import AssetNotFound
from server.imaging import pipeline
from server.imaging.inspect import SourceInfo
from server.imaging.vips import Cancel
from server.runtime import Runtime
from server.spec import Format, TransformSpec
from server.storage.base import AssetMeta


@dataclass(frozen=True, slots=True)
class Resolved:
    meta: AssetMeta
    fmt: Format
    negotiated: bool
    key: str


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
    rt: Runtime, asset_id: str, spec: TransformSpec, accept: str, timings: Timings
) -> Resolved:
    started = time.perf_counter()
    meta = await get_meta(rt, asset_id)
    timings.add("meta", started)
    kind = _source_info(meta).output_kind
    fmt, negotiated = formats.choose(spec, kind, meta.alpha, meta.frames, accept)
    return Resolved(meta, fmt, negotiated, variant_key(asset_id, meta.etag, spec.canonical(fmt)))


async def fetch(
    rt: Runtime, resolved: Resolved, spec: TransformSpec, timings: Timings
) -> tuple[Variant, str]:
    """The variant's bytes and where they came from (`hit-memory` or `miss`)."""
    cached = rt.variants.get(resolved.key)
    if cached is not None:
        return cached, "hit-memory"

    async def work() -> Variant:
        return await _render(rt, resolved, spec, timings)

    variant, _joined = await rt.flights.do(resolved.key, work)
    rt.variants.put(resolved.key, variant)
    return variant, "miss"


async def _render(
    rt: Runtime, resolved: Resolved, spec: TransformSpec, timings: Timings
) -> Variant:
    meta = resolved.meta
    started = time.perf_counter()
    try:
        data = await rt.storage.get(meta, rt.settings.max_source_bytes)
    except AssetNotFound:
        # Replaced between our metadata read and now: read the new metadata once more.
        rt.meta_cache.pop(meta.id, None)
        raise
    timings.add("fetch", started)
    info = _source_info(meta)
    options = rt.render_options
    queued = time.perf_counter()

    def job(cancel: Cancel) -> pipeline.Rendered:
        timings.add("queue", queued)
        began = time.perf_counter()
        out = pipeline.render(data, info, spec, resolved.fmt, options, cancel)
        timings.add("render", began)
        return out

    rendered = await rt.pool.run(job)
    return Variant(
        body=rendered.body,
        mime=formats.MIME[resolved.fmt],
        width=rendered.width,
        height=rendered.height,
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
