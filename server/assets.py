"""The asset registry the admin API edits: validate an upload, describe it, store it."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from urllib.parse import quote

from server.errors import AssetNotFound, StorageUnavailable
from server.imaging import exifsafe
from server.imaging.inspect import SourceInfo, check_decodes, probe
from server.imaging.vips import Cancel
from server.names import validate_id
from server.runtime import Runtime
from server.storage.base import AssetMeta


async def put_asset(rt: Runtime, asset_id: str, data: bytes) -> tuple[AssetMeta, bool]:
    """Validate `data` (format, limits, a full decode) and store it as `asset_id`.

    Returns the metadata and whether the asset is new. Nothing is stored unless the
    whole upload decodes within the limits."""
    # Stored without EXIF blocks that would trap libexif (imaging/exifsafe.py): the delivery
    # path hands stored files to libvips as they are.
    data = exifsafe.defuse(data)

    def validate(cancel: Cancel) -> SourceInfo:
        info = probe(data, rt.source_limits)
        check_decodes(data, info, cancel)
        return info

    info = await rt.pool.run(validate)
    try:
        await rt.storage.head(asset_id)
        created = False
    except AssetNotFound:
        created = True
    meta = AssetMeta(
        id=asset_id,
        mime=info.mime,
        width=info.width,
        height=info.height,
        bytes=len(data),
        etag=hashlib.sha256(data).hexdigest(),
        created_at=datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
        kind=info.kind,
        frames=info.frames,
        alpha=info.alpha,
        palette=info.palette,
        orientation=info.orientation,
    )
    await rt.storage.put(meta, data)
    rt.meta_cache.pop(asset_id, None)
    rt.last_meta.pop(asset_id, None)
    return meta, created


async def delete_asset(rt: Runtime, asset_id: str) -> None:
    """Remove an asset and every variant of it from storage, the store and memory."""
    await rt.storage.delete(asset_id)
    forget(rt, asset_id)
    await rt.store.purge(asset_id=asset_id)


def forget(rt: Runtime, asset_id: str) -> None:
    """Drop what this process remembers of an asset: metadata and in-memory variants."""
    rt.meta_cache.pop(asset_id, None)
    rt.last_meta.pop(asset_id, None)
    rt.variants.purge(asset_id=asset_id)


async def get_meta(rt: Runtime, asset_id: str) -> AssetMeta:
    """Asset metadata through the per-process TTL cache (the hot path reads it per request)."""
    meta = rt.meta_cache.get(asset_id)
    if meta is None:
        meta = await rt.storage.head(asset_id)
        rt.meta_cache[asset_id] = meta
        rt.last_meta[asset_id] = meta
    return meta


async def get_meta_or_stale(rt: Runtime, asset_id: str) -> tuple[AssetMeta, bool]:
    """Metadata, or when storage is down the last seen metadata (marked stale), so variants
    still in memory keep being served through an outage (stale-if-error)."""
    try:
        return await get_meta(rt, asset_id), False
    except StorageUnavailable:
        last = rt.last_meta.get(asset_id)
        if last is None:
            raise
        return last, True


def content_id(prefix: str, data: bytes, ext: str) -> str:
    """The id the server picks for an upload: <prefix><content hash>.<ext>. The same bytes
    under the same prefix are one asset, and no client-chosen name reaches storage."""
    return validate_id(f"{prefix}{hashlib.sha256(data).hexdigest()[:32]}.{ext}")


async def page(
    rt: Runtime, prefix: str, after: str | None, limit: int
) -> tuple[list[AssetMeta], str | None]:
    """Up to `limit` assets under `prefix` after id `after`, and the id to continue after
    when there are more (None at the end)."""
    found = await rt.storage.list_assets(prefix, after, limit + 1)
    return found[:limit], (found[limit - 1].id if len(found) > limit else None)


def public_json(meta: AssetMeta, base_url: str) -> dict[str, object]:
    """The SPEC §5 answer for an asset."""
    return {
        "id": meta.id,
        "url": f"{base_url.rstrip('/')}/t/_/{quote(meta.id)}",
        "mime": meta.mime,
        "width": meta.width,
        "height": meta.height,
        "bytes": meta.bytes,
        "etag": meta.etag,
        "created_at": meta.created_at,
    }
