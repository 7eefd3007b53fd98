"""The local-folder backend: the embedded default, and a shared store on one machine.

Layout under the data dir: `assets/<h[:2]>/<h>/meta.json` and `.../<etag>.bin`, where h is
the sha256 of the asset id. Hashing the id keeps any id (with `/`, unicode, or names that
are also folder names) off the file system's rules, and no id can reach outside the folder.
Objects (the variant store) are under `objects/<key>`; locks are `flock`s on the files in
`locks/`.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import hashlib
import os
import zlib
from collections.abc import AsyncIterator
from pathlib import Path

import orjson

from server import metrics
from server.errors import AssetNotFound, StorageUnavailable
from server.storage import files
from server.storage.base import AssetMeta

# Locks share this many files. Two names on one file wait for each other as if one lock
# were held: with the 8 renders two workers run at once, 1 cold render in ~500 waits for
# an unrelated one to finish, and none is answered wrongly.
LOCK_FILES = 4096


class LocalStorage:
    def __init__(self, root: Path) -> None:
        self.root = root
        (root / "assets").mkdir(parents=True, exist_ok=True)
        (root / "locks").mkdir(exist_ok=True)
        self._locks: dict[str, int] = {}  # name -> the descriptor holding its flock

    def _folder(self, asset_id: str) -> Path:
        h = hashlib.sha256(asset_id.encode("utf-8", "surrogatepass")).hexdigest()
        return self.root / "assets" / h[:2] / h

    async def put(self, meta: AssetMeta, data: bytes) -> None:
        with files.writing("put"):
            await asyncio.to_thread(self._put, meta, data)

    def _put(self, meta: AssetMeta, data: bytes) -> None:
        folder = self._folder(meta.id)
        folder.mkdir(parents=True, exist_ok=True)
        old = self._read_meta(meta.id)
        files.atomic_write(folder / f"{meta.etag}.bin", data)
        files.atomic_write(folder / "meta.json", orjson.dumps(meta.to_json()))
        if old is not None and old.etag != meta.etag:
            # A reader holding the old metadata gets AssetNotFound and reads it again.
            (folder / f"{old.etag}.bin").unlink(missing_ok=True)

    async def head(self, asset_id: str) -> AssetMeta:
        meta = await asyncio.to_thread(self._read_meta, asset_id)
        if meta is None:
            raise AssetNotFound(asset_id)
        return meta

    def _read_meta(self, asset_id: str) -> AssetMeta | None:
        try:
            raw = (self._folder(asset_id) / "meta.json").read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            metrics.storage_error("head")
            raise StorageUnavailable(f"storage read failed: {exc.strerror}") from exc
        return AssetMeta.from_json(orjson.loads(raw))

    async def get(self, meta: AssetMeta, max_bytes: int) -> bytes:
        return await asyncio.to_thread(self._get, meta, max_bytes)

    def _get(self, meta: AssetMeta, max_bytes: int) -> bytes:
        data = files.read_capped(
            self._folder(meta.id) / f"{meta.etag}.bin", max_bytes, "get", "source"
        )
        if data is None:
            raise AssetNotFound(meta.id)
        return data

    def local_path(self, meta: AssetMeta) -> Path:
        return self._folder(meta.id) / f"{meta.etag}.bin"

    async def delete(self, asset_id: str) -> bool:
        with files.writing("delete"):
            return await asyncio.to_thread(self._delete, asset_id)

    def _delete(self, asset_id: str) -> bool:
        folder = self._folder(asset_id)
        meta = folder / "meta.json"
        if not meta.exists():
            return False
        meta.unlink(missing_ok=True)  # the asset is gone from here on; the rest is cleanup
        for blob in folder.glob("*.bin"):
            blob.unlink(missing_ok=True)
        with contextlib.suppress(OSError):
            folder.rmdir()
        return True

    async def list_assets(self, prefix: str, after: str | None, limit: int) -> list[AssetMeta]:
        return await asyncio.to_thread(self._list, prefix, after, limit)

    def _list(self, prefix: str, after: str | None, limit: int) -> list[AssetMeta]:
        # Ids are hashed on disk, so listing reads every meta.json: fine for the embedded
        # default's scale; the S3 backend lists by key prefix instead.
        found: list[AssetMeta] = []
        for path in (self.root / "assets").glob("*/*/meta.json"):
            try:
                meta = AssetMeta.from_json(orjson.loads(path.read_bytes()))
            except (OSError, orjson.JSONDecodeError):
                continue  # deleted while we looked
            if meta.id.startswith(prefix) and (after is None or meta.id > after):
                found.append(meta)
        found.sort(key=lambda m: m.id)
        return found[:limit]

    def _doc(self, kind: str, name: str) -> Path:
        # kind is ours and name a validated template name: both are safe file names.
        return self.root / "docs" / kind / f"{name}.json"

    async def put_doc(self, kind: str, name: str, data: bytes, exclusive: bool = False) -> bool:
        path = self._doc(kind, name)
        with files.writing("put_doc"):
            if exclusive:
                return await asyncio.to_thread(files.exclusive_write, path, data)
            await asyncio.to_thread(path.parent.mkdir, parents=True, exist_ok=True)
            await asyncio.to_thread(files.atomic_write, path, data)
        return True

    async def get_doc(self, kind: str, name: str) -> bytes | None:
        try:
            return await asyncio.to_thread(self._doc(kind, name).read_bytes)
        except FileNotFoundError:
            return None
        except OSError as exc:
            metrics.storage_error("get_doc")
            raise StorageUnavailable(f"storage read failed: {exc.strerror}") from exc

    async def list_docs(self, kind: str) -> list[str]:
        folder = self.root / "docs" / kind
        names = await asyncio.to_thread(lambda: [p.stem for p in folder.glob("*.json")])
        return sorted(names)

    async def delete_doc(self, kind: str, name: str) -> bool:
        path = self._doc(kind, name)
        existed = await asyncio.to_thread(path.exists)
        with files.writing("delete_doc"):
            await asyncio.to_thread(path.unlink, True)
        return existed

    def _object(self, key: str) -> Path:
        # Keys are built by us from hashes, template names and base64url variant keys.
        return self.root / "objects" / key

    async def put_object(self, key: str, data: bytes, exclusive: bool = False) -> bool:
        with files.writing("put_object"):
            return await asyncio.to_thread(self._put_object, key, data, exclusive)

    def _put_object(self, key: str, data: bytes, exclusive: bool) -> bool:
        path = self._object(key)
        if not exclusive:
            try:
                files.atomic_write(path, data)
            except FileNotFoundError:  # the first object in its folder
                path.parent.mkdir(parents=True, exist_ok=True)
                files.atomic_write(path, data)
            return True
        return files.exclusive_write(path, data)

    async def get_object(self, key: str, max_bytes: int = 2**31) -> bytes | None:
        path = self._object(key)
        # A miss is answered on the loop (a cold render looks twice): a failed lookup costs
        # ~2 us, a hop to a thread and back ~85 us of CPU. Only a hit reads in a thread.
        try:
            os.stat(path)
        except FileNotFoundError:
            return None
        except OSError as exc:
            metrics.storage_error("get_object")
            raise StorageUnavailable(f"storage read failed: {exc.strerror}") from exc
        return await asyncio.to_thread(files.read_capped, path, max_bytes, "get_object", "object")

    async def delete_object(self, key: str) -> None:
        with files.writing("delete_object"):
            await asyncio.to_thread(self._object(key).unlink, True)

    async def list_keys(
        self, prefix: str, after: str | None = None, limit: int = 1000
    ) -> list[str]:
        def scan() -> list[str]:
            base = self.root / "objects"
            folder = base / prefix.rsplit("/", 1)[0] if "/" in prefix else base
            if not folder.is_dir():
                return []
            keys = (
                p.relative_to(base).as_posix()
                for p in folder.rglob("*")
                if p.is_file() and not p.name.startswith(".tmp-")
            )
            chosen = sorted(
                k for k in keys if k.startswith(prefix) and (after is None or k > after)
            )
            return chosen[:limit]

        return await asyncio.to_thread(scan)

    async def scan_sizes(self, prefix: str) -> AsyncIterator[tuple[str, int, float]]:
        base = self.root / "objects"
        folders = [base / prefix]
        while folders:
            try:
                listing = await asyncio.to_thread(os.scandir, folders.pop())
            except (FileNotFoundError, NotADirectoryError):
                continue
            with listing:
                # files.SCAN_BATCH entries a step: one asset can have any number of variants in
                # one folder, and a scan must not hold them all.
                while batch := await asyncio.to_thread(files.scan_batch, listing, base, folders):
                    for entry in batch:
                        yield entry

    async def lock(self, name: str, ttl_s: float) -> bool:
        """An exclusive `flock` on one of LOCK_FILES files, which the kernel drops when its
        holder dies, so `ttl_s` is not needed. A file made and deleted per lock (the way
        objects are written) cost a cold render ~1 ms of kernel CPU: ext4 searches past
        its recently deleted inodes for every new file (perf, bench/run.py's cold runs).
        Run on the loop: opening an existing file and a non-blocking flock take
        microseconds, less than a hop to a thread."""
        path = self.root / "locks" / f"{zlib.crc32(name.encode()) % LOCK_FILES:03x}"
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except OSError as exc:
            metrics.storage_error("lock")
            raise StorageUnavailable(f"storage lock failed: {exc.strerror}") from exc
        try:
            # Each lock opens its own descriptor, so two in one process exclude each other
            # too (flock belongs to the open file, not to the process).
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        except OSError as exc:
            os.close(fd)
            metrics.storage_error("lock")
            raise StorageUnavailable(f"storage lock failed: {exc.strerror}") from exc
        self._locks[name] = fd
        return True

    async def unlock(self, name: str) -> None:
        fd = self._locks.pop(name, None)
        if fd is not None:
            os.close(fd)  # its only descriptor: closing it releases the flock

    async def ping(self) -> None:
        ok = await asyncio.to_thread(os.access, self.root / "assets", os.R_OK | os.W_OK)
        if not ok:
            metrics.storage_error("ping")
            raise StorageUnavailable("data dir is not readable and writable")
