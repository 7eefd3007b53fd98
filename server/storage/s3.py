"""The S3 backend (aiobotocore): the state replicas share.

Layout under `s3://bucket/prefix`: `meta/<id>` (JSON, the commit point of an asset),
`originals/<sha256(id)>/<etag>`, `docs/<kind>/<name>.json`, `variants/...` (see caching.py)
and `locks/<name>`. One client per process, bounded timeouts and retries, and every botocore
error translated here: a missing key is AssetNotFound/None, anything else StorageUnavailable
(503 with Retry-After).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import time
from collections.abc import AsyncIterator
from typing import Any

import orjson
from aiobotocore.session import get_session
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from server import metrics
from server.errors import AssetNotFound, InvalidId, StorageUnavailable, TooLarge
from server.storage.base import AssetMeta

MISSING = {"NoSuchKey", "404", "NotFound"}
KEY_LIMIT = 1024  # bytes, S3's own
CHUNK = 256 * 1024


class S3Storage:
    def __init__(self, client: Any, bucket: str, prefix: str, deadline_s: float = 5.0) -> None:
        self.client = client
        self.deadline_s = deadline_s
        self.bucket = bucket
        self.prefix = f"{prefix.strip('/')}/" if prefix.strip("/") else ""
        self._locks: set[str] = set()  # names this process holds

    @classmethod
    @contextlib.asynccontextmanager
    async def connect(
        cls, url: str, endpoint: str, region: str, deadline_s: float
    ) -> AsyncIterator[S3Storage]:
        """An S3Storage over one client for the life of the process (app lifespan)."""
        bucket, _, prefix = url.removeprefix("s3://").partition("/")
        config = Config(
            connect_timeout=deadline_s / 2,
            read_timeout=deadline_s / 2,
            retries={"max_attempts": 2, "mode": "standard"},
            s3={"addressing_style": "path"},
            max_pool_connections=64,
        )
        session = get_session()
        async with session.create_client(
            "s3", endpoint_url=endpoint or None, region_name=region, config=config
        ) as client:
            yield cls(client, bucket, prefix, deadline_s)

    def _key(self, *parts: str) -> str:
        key = self.prefix + "/".join(parts)
        if len(key.encode()) > KEY_LIMIT:
            raise InvalidId(f"id too long for S3 keys under this prefix (limit {KEY_LIMIT} bytes)")
        return key

    @staticmethod
    def _blob(asset_id: str, etag: str) -> tuple[str, str]:
        return "originals", f"{hashlib.sha256(asset_id.encode()).hexdigest()}/{etag}"

    async def _call(self, op: str, **kwargs: Any) -> Any:
        try:
            # One deadline over botocore's own timeouts and retries: a stalled server (a
            # paused process accepts connections and never answers) cannot hold a request.
            async with asyncio.timeout(self.deadline_s):
                return await getattr(self.client, op)(Bucket=self.bucket, **kwargs)
        except ClientError as exc:
            code = str(exc.response.get("Error", {}).get("Code", ""))
            if code in MISSING:
                raise KeyError(kwargs.get("Key", "")) from exc
            if code == "PreconditionFailed":
                raise FileExistsError(kwargs.get("Key", "")) from exc
            metrics.storage_error(op)
            raise StorageUnavailable(f"storage {op} failed ({code or 'error'})") from exc
        except (BotoCoreError, OSError, TimeoutError) as exc:
            # Connection refused/reset, DNS, read timeouts: the store is away, not the data.
            metrics.storage_error(op)
            raise StorageUnavailable(f"storage {op} failed ({type(exc).__name__})") from exc

    async def _read(self, key: str, max_bytes: int) -> bytes:
        response = await self._call("get_object", Key=key)
        if response.get("ContentLength", 0) > max_bytes:
            raise TooLarge(f"source is larger than {max_bytes} bytes")
        chunks, size = [], 0
        try:
            async with asyncio.timeout(self.deadline_s), response["Body"] as body:
                while chunk := await body.read(CHUNK):
                    size += len(chunk)
                    if size > max_bytes:
                        raise TooLarge(f"source is larger than {max_bytes} bytes")
                    chunks.append(chunk)
        except (BotoCoreError, OSError, TimeoutError) as exc:
            metrics.storage_error("get_object")
            raise StorageUnavailable("storage read was cut off") from exc
        return b"".join(chunks)

    async def put_object(self, key: str, data: bytes, exclusive: bool = False) -> bool:
        """Write an object (a single PUT is atomic in S3); with `exclusive`, only if it does
        not exist yet: False when it did."""
        extra = {"IfNoneMatch": "*"} if exclusive else {}
        try:
            await self._call("put_object", Key=self.prefix + key, Body=data, **extra)
        except FileExistsError:
            return False
        return True

    async def get_object(self, key: str, max_bytes: int = 2**31) -> bytes | None:
        try:
            return await self._read(self.prefix + key, max_bytes)
        except KeyError:
            return None

    async def delete_object(self, key: str) -> None:
        await self._call("delete_object", Key=self.prefix + key)

    async def list_keys(
        self, prefix: str, after: str | None = None, limit: int = 1000
    ) -> list[str]:
        """Keys under `prefix` (relative to ours), in order, after `after`."""
        keys: list[str] = []
        kwargs: dict[str, Any] = {"Prefix": self.prefix + prefix}
        if after is not None:
            kwargs["StartAfter"] = self.prefix + after
        while len(keys) < limit:
            page = await self._call(
                "list_objects_v2", MaxKeys=min(1000, limit - len(keys)), **kwargs
            )
            keys += [o["Key"][len(self.prefix) :] for o in page.get("Contents", [])]
            if not page.get("IsTruncated"):
                break
            kwargs = {
                "Prefix": self.prefix + prefix,
                "ContinuationToken": page["NextContinuationToken"],
            }
        return keys

    async def lock(self, name: str, ttl_s: float) -> bool:
        """`locks/<name>`, written only if absent (a conditional PUT), saying until when it
        holds. One past its time (its holder died) is broken and taken."""
        key = f"locks/{name}"
        body = orjson.dumps({"until": time.time() + ttl_s})
        taken = await self.put_object(key, body, exclusive=True)
        if not taken:
            held = await self.get_object(key)
            if held is not None and orjson.loads(held).get("until", 0) > time.time():
                return False
            await self.delete_object(key)
            taken = await self.put_object(key, body, exclusive=True)
        if taken:
            self._locks.add(name)
        return taken

    async def unlock(self, name: str) -> None:
        # Only our own: a waiter that gave up and rendered anyway must not free the lock of
        # the holder it gave up on.
        if name in self._locks:
            self._locks.discard(name)
            await self.delete_object(f"locks/{name}")

    async def scan_sizes(self, prefix: str) -> AsyncIterator[tuple[str, int, float]]:
        kwargs: dict[str, Any] = {"Prefix": self.prefix + prefix}
        while True:
            page = await self._call("list_objects_v2", MaxKeys=1000, **kwargs)
            for o in page.get("Contents", []):
                yield o["Key"][len(self.prefix) :], int(o["Size"]), o["LastModified"].timestamp()
            if not page.get("IsTruncated"):
                return
            kwargs = {
                "Prefix": self.prefix + prefix,
                "ContinuationToken": page["NextContinuationToken"],
            }

    # --- the Storage protocol -------------------------------------------------------------

    async def put(self, meta: AssetMeta, data: bytes) -> None:
        old = await self._meta(meta.id)
        await self._call("put_object", Key=self._key(*self._blob(meta.id, meta.etag)), Body=data)
        await self._call(
            "put_object", Key=self._key("meta", meta.id), Body=orjson.dumps(meta.to_json())
        )
        if old is not None and old.etag != meta.etag:
            await self._call("delete_object", Key=self._key(*self._blob(old.id, old.etag)))

    async def _meta(self, asset_id: str) -> AssetMeta | None:
        try:
            raw = await self._read(self._key("meta", asset_id), 1024 * 1024)
        except KeyError:
            return None
        return AssetMeta.from_json(orjson.loads(raw))

    async def head(self, asset_id: str) -> AssetMeta:
        meta = await self._meta(asset_id)
        if meta is None:
            raise AssetNotFound(asset_id)
        return meta

    async def get(self, meta: AssetMeta, max_bytes: int) -> bytes:
        try:
            return await self._read(self._key(*self._blob(meta.id, meta.etag)), max_bytes)
        except KeyError:
            raise AssetNotFound(meta.id) from None

    async def delete(self, asset_id: str) -> bool:
        meta = await self._meta(asset_id)
        if meta is None:
            return False
        await self._call("delete_object", Key=self._key("meta", asset_id))
        await self._call("delete_object", Key=self._key(*self._blob(asset_id, meta.etag)))
        return True

    async def list_assets(self, prefix: str, after: str | None, limit: int) -> list[AssetMeta]:
        keys = await self.list_keys(f"meta/{prefix}", f"meta/{after}" if after else None, limit)
        found = []
        for key in keys:
            meta = await self._meta(key.removeprefix("meta/"))
            if meta is not None:  # deleted while we listed
                found.append(meta)
        return found

    async def put_doc(self, kind: str, name: str, data: bytes, exclusive: bool = False) -> bool:
        """As put_object: a conditional PUT (If-None-Match: *) when `exclusive`."""
        extra = {"IfNoneMatch": "*"} if exclusive else {}
        try:
            await self._call(
                "put_object", Key=self._key("docs", kind, f"{name}.json"), Body=data, **extra
            )
        except FileExistsError:
            return False
        return True

    async def get_doc(self, kind: str, name: str) -> bytes | None:
        try:
            return await self._read(self._key("docs", kind, f"{name}.json"), 1024 * 1024)
        except KeyError:
            return None

    async def list_docs(self, kind: str) -> list[str]:
        keys = await self.list_keys(f"docs/{kind}/", limit=100_000)
        return sorted(k.rsplit("/", 1)[-1].removesuffix(".json") for k in keys)

    async def delete_doc(self, kind: str, name: str) -> bool:
        existed = await self.get_doc(kind, name) is not None
        await self._call("delete_object", Key=self._key("docs", kind, f"{name}.json"))
        return existed

    def local_path(self, meta: AssetMeta) -> None:
        return None  # remote: originals come through get() and the originals cache

    async def ping(self) -> None:
        await self._call("head_bucket")
