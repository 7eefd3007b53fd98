"""The Storage protocol every backend implements, and the metadata kept beside an original.

An asset exists when its metadata does: a backend writes the original first and the
metadata last, each atomically, so a reader never sees metadata without its bytes, and a
crash mid-upload leaves nothing visible. Originals are kept per etag, so a re-upload never
changes the bytes behind metadata a reader already holds.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol


@dataclass(frozen=True, slots=True)
class AssetMeta:
    id: str
    mime: str
    width: int
    height: int
    bytes: int
    etag: str  # sha256 of the original, hex: a content hash, so equal uploads are equal
    created_at: str  # ISO 8601, UTC
    kind: str  # jpeg png webp gif heif
    frames: int = 1
    alpha: bool = False
    palette: bool = False
    orientation: int = 1

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> AssetMeta:
        return cls(**{k: data[k] for k in cls.__dataclass_fields__ if k in data})


class Storage(Protocol):
    async def put(self, meta: AssetMeta, data: bytes) -> None:
        """Store an original and its metadata atomically (replacing any earlier one)."""

    async def head(self, asset_id: str) -> AssetMeta:
        """The metadata, or AssetNotFound."""

    async def get(self, meta: AssetMeta, max_bytes: int) -> bytes:
        """The original `meta` describes, or AssetNotFound if it was replaced since."""

    def local_path(self, meta: AssetMeta) -> Path | None:
        """The original as a file on this machine, for libvips to read itself, or None when
        the backend is remote. Replacing the asset removes the file, but a reader that has
        it open keeps reading the old bytes."""

    async def delete(self, asset_id: str) -> bool:
        """Remove an asset; False when there was none (deleting is idempotent)."""

    async def list_assets(self, prefix: str, after: str | None, limit: int) -> list[AssetMeta]:
        """Up to `limit` assets whose id starts with `prefix`, in id order, after `after`."""

    async def put_doc(self, kind: str, name: str, data: bytes, exclusive: bool = False) -> bool:
        """Store a small JSON document (a template) atomically; with `exclusive`, only if
        there is no document of that name yet: then False, and nothing written, when there
        is, however many processes race to create it."""

    async def get_doc(self, kind: str, name: str) -> bytes | None:
        """A stored document, or None."""

    async def list_docs(self, kind: str) -> list[str]:
        """The names of every document of `kind`, sorted."""

    async def delete_doc(self, kind: str, name: str) -> bool:
        """Remove a document; False when there was none."""

    async def put_object(self, key: str, data: bytes, exclusive: bool = False) -> bool:
        """Write a whole object atomically; with `exclusive`, only if it does not exist yet
        (then False when it did). Keys are ours: `variants/...`, `locks/...`."""

    async def get_object(self, key: str, max_bytes: int = 2**31) -> bytes | None:
        """An object, or None."""

    async def delete_object(self, key: str) -> None:
        """Remove an object; no error when it is absent."""

    async def list_keys(
        self, prefix: str, after: str | None = None, limit: int = 1000
    ) -> list[str]:
        """Object keys under `prefix`, in order, after `after`."""

    async def lock(self, name: str, ttl_s: float) -> bool:
        """Take the lock `name`, shared by every process on this storage, or False while
        another holder has it. A holder that dies loses it: at once on a local folder, after
        `ttl_s` on S3, so a crash never blocks a lock for good."""

    async def unlock(self, name: str) -> None:
        """Release a lock this process took; a no-op for one it does not hold."""

    def scan_sizes(self, prefix: str) -> AsyncIterator[tuple[str, int, float]]:
        """(key, bytes, modified unix time) of every object under `prefix`, a folder or a
        page at a time, so a scan of a large store never holds all of it in memory."""

    async def ping(self) -> None:
        """Return when the backend can serve reads, or raise StorageUnavailable."""
