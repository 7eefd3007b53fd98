"""Processing results (SPEC §6): kept in storage for IMGCDN_RESULT_TTL_S, served at signed,
expiring /r/{id}.{ext}?exp=..&sig=.. URLs, and swept once expired.

A result is two storage objects under `results/<id[:2]>/`: `<id>.bin` (the encoded image)
and `<id>.json` (fmt, mime, width, height, bytes, expires_at). Bytes are written first and
metadata last, each atomically, and both under the storage lock `result-<id>` that the sweep
takes too: so metadata never names missing bytes, a crash between the two leaves only bytes
no lookup sees (the sweep removes them later), and a sweep never deletes a result that a
save or a renewal is writing at that moment.

The id is the caller's (a hash of the input and the effective ops), so equal work is one
result. Lookups are answered from a per-process cache while the result is unexpired: a
repeated identical request costs no storage round trip.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import re
import secrets
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import asdict, dataclass, field, replace
from typing import TYPE_CHECKING, Any

import orjson
from cachetools import TTLCache
from itsdangerous import Signer

from server.errors import InvalidId, InvalidSignature, ResultNotFound, StorageUnavailable
from server.formats import MIME
from server.settings import Settings
from server.spec import FORMATS, Format

if TYPE_CHECKING:
    from server.runtime import Runtime

RESULT_ID = re.compile(r"[A-Za-z0-9_-]{16,64}")
EXTENSION: dict[Format, str] = {
    "jpeg": "jpg",
    "png": "png",
    "webp": "webp",
    "avif": "avif",
    "gif": "gif",
}
PREFIX = "results/"
KEY_OBJECT = "keys/result-signing"  # the generated key, when IMGCDN_SIGNING_KEYS is unset
SALT = "imgcdn.result"  # a result sig never verifies as a delivery sig, nor the reverse
RENEW_FRACTION = 0.1  # renewals rewrite metadata at most once per this share of the TTL
LOCK_TTL_S = 30.0  # an S3 lock whose holder died is broken after this
# On a local folder, lock names share 4,096 files (storage/local.py): a result's lock can be
# the file an unrelated render holds, for up to IMGCDN_RENDER_TIMEOUT_S (default 20 s).
# Rare (renders in flight / 4,096), and a wait, not an error, unless storage is stuck.
LOCK_WAIT_S = 30.0

# The clock every expiry is computed with: tests replace it (a seam we own) rather than wait.
clock: Callable[[], float] = time.time


@dataclass(frozen=True, slots=True)
class Result:
    id: str
    fmt: Format
    mime: str
    width: int
    height: int
    bytes: int
    expires_at: int  # unix seconds; the URL's exp

    @property
    def ext(self) -> str:
        return EXTENSION[self.fmt]


@dataclass
class ResultStore:
    """The per-process part: cached metadata and the signing key, once loaded."""

    settings: Settings
    metas: TTLCache[str, Result] = field(init=False)
    generated_key: str | None = None

    def __post_init__(self) -> None:
        # Lookups also check expires_at: the TTL only bounds how long an entry is kept.
        self.metas = TTLCache(maxsize=10_000, ttl=self.settings.result_ttl_s)


def validate_result_id(result_id: str) -> str:
    if not RESULT_ID.fullmatch(result_id):
        raise InvalidId("a result id is 16..64 of A-Z a-z 0-9 _ -", param="id")
    return result_id


def object_keys(result_id: str) -> tuple[str, str]:
    """(bytes key, metadata key) of a result."""
    folder = f"{PREFIX}{result_id[:2]}/{result_id}"
    return f"{folder}.bin", f"{folder}.json"


def parse_meta(result_id: str, raw: bytes) -> Result | None:
    try:
        data: dict[str, Any] = orjson.loads(raw)
        fmt = data["fmt"]
        if fmt not in FORMATS:
            return None
        return Result(
            result_id,
            fmt,
            str(data["mime"]),
            int(data["width"]),
            int(data["height"]),
            int(data["bytes"]),
            int(data["expires_at"]),
        )
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
        return None  # never written by us: atomic writes leave no partial metadata


async def signing_keys(rt: Runtime) -> tuple[str, ...]:
    """The keys result URLs verify with; the last one signs.

    IMGCDN_SIGNING_KEYS when set (rotated as delivery's are). Else one generated key kept in
    storage, created once with an exclusive write so every worker and replica on that
    storage shares it: whoever can read the store can read the results themselves, so the
    key guards nothing more there."""
    if rt.settings.signing_keys:
        return rt.settings.signing_keys
    store = rt.results
    if store.generated_key is None:
        raw = await rt.storage.get_object(KEY_OBJECT, max_bytes=1024)
        if raw is None:
            made = secrets.token_urlsafe(32)
            if await rt.storage.put_object(KEY_OBJECT, made.encode(), exclusive=True):
                raw = made.encode()
            else:  # another process made it first: use theirs
                raw = await rt.storage.get_object(KEY_OBJECT, max_bytes=1024)
        if raw is None or len(raw.strip()) < 32:
            raise StorageUnavailable("the result signing key could not be read")
        store.generated_key = raw.strip().decode("ascii")
    return (store.generated_key,)


def _signature(message: str, key: str) -> str:
    signer = Signer(key, salt=SALT, digest_method=hashlib.sha256, key_derivation="hmac")
    return signer.get_signature(message.encode("ascii")).decode("ascii")


def url_path(result: Result) -> str:
    """The signed part of a result URL: `/r/{id}.{ext}?exp=N`."""
    return f"/r/{result.id}.{result.ext}?exp={result.expires_at}"


async def verify(rt: Runtime, message: str, sig: str) -> None:
    """Accept when any key signed `message`, comparing against every key in constant time."""
    given = sig.encode("ascii", "replace")
    keys = await signing_keys(rt)
    matches = [hmac.compare_digest(given, _signature(message, k).encode()) for k in keys]
    if not any(matches):
        raise InvalidSignature("signature does not match this URL", param="sig")


def public_url(rt: Runtime, request_base: str, result: Result) -> str:
    """The absolute URL of `result`: IMGCDN_PUBLIC_URL or the request's base, then
    /r/{id}.{ext}?exp=..&sig=... Call after `lookup` or `save`, which load the key."""
    if rt.settings.signing_keys:
        key = rt.settings.signing_keys[-1]
    elif rt.results.generated_key is not None:
        key = rt.results.generated_key
    else:
        raise RuntimeError("public_url before lookup/save loaded the result signing key")
    base = rt.settings.public_url or request_base.rstrip("/")
    path = url_path(result)
    return f"{base}{path}&sig={_signature(path, key)}"


def described(rt: Runtime, request_base: str, result: Result) -> dict[str, Any]:
    """The ProcessedImage JSON of `result` (SPEC §6), as /v1/image/* and a batch item's
    result give it."""
    return {
        "image_url": public_url(rt, request_base, result),
        "mime": result.mime,
        "width": result.width,
        "height": result.height,
        "bytes": result.bytes,
        "format": result.fmt,
        "expires_at": result.expires_at,
    }


async def lookup(rt: Runtime, result_id: str) -> Result | None:
    """The stored, unexpired result `result_id`, or None. Cached per process."""
    validate_result_id(result_id)
    await signing_keys(rt)  # so public_url can sign without I/O
    cached = rt.results.metas.get(result_id)
    now = clock()
    if cached is not None and cached.expires_at > now:
        return cached
    raw = await rt.storage.get_object(object_keys(result_id)[1], max_bytes=4096)
    result = parse_meta(result_id, raw) if raw is not None else None
    if result is None or result.expires_at <= now:
        rt.results.metas.pop(result_id, None)
        return None
    rt.results.metas[result_id] = result
    return result


async def read(rt: Runtime, result: Result) -> bytes:
    """The bytes of `result`, or ResultNotFound when they are gone (swept)."""
    body = await rt.storage.get_object(object_keys(result.id)[0])
    if body is None:
        rt.results.metas.pop(result.id, None)
        raise ResultNotFound()
    return body


def ttl_of(rt: Runtime, ttl_s: int | None) -> int:
    """A result's lifetime: IMGCDN_RESULT_TTL_S, or a caller's own `ttl_s` (seed 004's
    24 h URLs) when longer. Never shorter: the sweep only looks at metadata written more
    than IMGCDN_RESULT_TTL_S ago, then deletes by each result's own expires_at, so a longer
    life is swept on time and a shorter one would linger."""
    return max(rt.settings.result_ttl_s, ttl_s or 0)


async def save(
    rt: Runtime,
    result_id: str,
    fmt: Format,
    body: bytes,
    width: int,
    height: int,
    ttl_s: int | None = None,
) -> Result:
    """Store a result, expiring `ttl_of(ttl_s)` from now: bytes first, metadata last."""
    validate_result_id(result_id)
    await signing_keys(rt)
    expires_at = int(clock()) + ttl_of(rt, ttl_s)
    result = Result(result_id, fmt, MIME[fmt], width, height, len(body), expires_at)
    bytes_key, meta_key = object_keys(result_id)
    async with _locked(rt, result_id):
        await rt.storage.put_object(bytes_key, body)
        await rt.storage.put_object(meta_key, _meta_json(result))
    rt.results.metas[result_id] = result
    return result


async def renew(rt: Runtime, result: Result, ttl_s: int | None = None) -> Result:
    """A reused result: its expiry pushed to now + `ttl_of(ttl_s)` (never pulled in: a
    result saved for longer keeps its later expiry), stored so that no sweep anywhere
    deletes it. Only rewritten once RENEW_FRACTION of the TTL has passed since the last
    renewal; until then `result` is returned as it is (its URL stays the same, which the
    caches in front like). A result swept meanwhile is returned unchanged."""
    ttl = ttl_of(rt, ttl_s)
    target = int(clock()) + ttl
    if target - result.expires_at < ttl * RENEW_FRACTION:
        return result
    meta_key = object_keys(result.id)[1]
    async with _locked(rt, result.id):
        raw = await rt.storage.get_object(meta_key, max_bytes=4096)
        current = parse_meta(result.id, raw) if raw is not None else None
        if current is None:
            return result
        if target - current.expires_at >= ttl * RENEW_FRACTION:
            current = replace(current, expires_at=target)
            await rt.storage.put_object(meta_key, _meta_json(current))
    rt.results.metas[result.id] = current
    return current


def _meta_json(result: Result) -> bytes:
    data = asdict(result)
    del data["id"]  # the key names it
    return orjson.dumps(data)


@contextlib.asynccontextmanager
async def _locked(rt: Runtime, result_id: str) -> AsyncIterator[None]:
    """Hold `result-<id>`, polling while a sweep or an identical save holds it (for a few
    storage calls). Past LOCK_WAIT_S storage is too slow to be worth waiting for."""
    name = f"result-{result_id}"
    deadline = time.monotonic() + LOCK_WAIT_S
    pause = 0.005
    while not await rt.storage.lock(name, LOCK_TTL_S):
        if time.monotonic() > deadline:
            raise StorageUnavailable("result store is busy")
        await asyncio.sleep(pause)
        pause = min(pause * 2, 0.1)
    try:
        yield
    finally:
        await rt.storage.unlock(name)
