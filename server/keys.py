"""API keys (SPEC §6): the registry admins edit, and the check of a presented key.

A key is shown once, as `ik_<id>_<secret>`: the id (12 of a-z0-9) finds the record, and
only sha256(secret) is stored, compared in constant time. Records are Storage documents of
kind "keys", so replicas sharing a bucket share them, cached per process for
IMGCDN_META_TTL_S (another worker sees a change, a disabled key too, after it).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import string
import time
from dataclasses import dataclass, replace
from typing import Any, Literal

import orjson
from cachetools import LRUCache, TTLCache

from server.errors import KeyNotFound, StorageUnavailable
from server.keyfields import SCOPES, FieldDefaults, parse_fields, rfc3339
from server.state.base import Policy
from server.storage.base import Storage

KIND = "keys"
PREFIX = "ik_"
ID_LENGTH = 12
_ID_CHARS = string.ascii_lowercase + string.digits
# Compared against when the id is unknown, so an unknown id costs what a wrong secret does.
_NO_HASH = hashlib.sha256(b"no such key").hexdigest()

State = Literal["active", "disabled", "expired"]

__all__ = ["SCOPES", "ApiKey", "KeyRegistry", "new_key_string", "split_key"]


@dataclass(frozen=True, slots=True)
class ApiKey:
    id: str
    name: str
    secret_sha256: str
    disabled: bool
    rate_per_s: float
    burst: int
    daily_quota: int | None
    expires_at: int | None
    scopes: tuple[str, ...]
    prefix: str
    created_at: int

    def state(self, now: float | None = None) -> State:
        if self.disabled:
            return "disabled"
        if self.expires_at is not None and (now or time.time()) >= self.expires_at:
            return "expired"
        return "active"

    @property
    def policy(self) -> Policy:
        return Policy(self.rate_per_s, self.burst, self.daily_quota)

    def to_json(self, last_used: float | None = None) -> dict[str, Any]:
        """The public view: never the secret nor its hash."""
        return {
            "id": self.id,
            "name": self.name,
            "state": self.state(),
            "rate_per_s": self.rate_per_s,
            "burst": self.burst,
            "daily_quota": self.daily_quota,
            "expires_at": rfc3339(self.expires_at) if self.expires_at is not None else None,
            "scopes": list(self.scopes),
            "prefix": self.prefix,
            "created_at": rfc3339(self.created_at),
            "last_used_at": rfc3339(int(last_used)) if last_used is not None else None,
        }

    def stored(self) -> bytes:
        return orjson.dumps(
            {
                "id": self.id,
                "name": self.name,
                "secret_sha256": self.secret_sha256,
                "disabled": self.disabled,
                "rate_per_s": self.rate_per_s,
                "burst": self.burst,
                "daily_quota": self.daily_quota,
                "expires_at": self.expires_at,
                "scopes": list(self.scopes),
                "prefix": self.prefix,
                "created_at": self.created_at,
            }
        )

    @classmethod
    def from_stored(cls, raw: bytes) -> ApiKey:
        doc = orjson.loads(raw)
        doc["scopes"] = tuple(doc["scopes"])
        return cls(**doc)


def new_key_string() -> tuple[str, str, str]:
    """(id, secret, the key string shown once)."""
    key_id = "".join(secrets.choice(_ID_CHARS) for _ in range(ID_LENGTH))
    secret = secrets.token_urlsafe(32)
    return key_id, secret, f"{PREFIX}{key_id}_{secret}"


def split_key(presented: str) -> tuple[str, str] | None:
    """(id, secret) of a string shaped like a key, else None."""
    key_id = presented[len(PREFIX) : len(PREFIX) + ID_LENGTH]
    secret = presented[len(PREFIX) + ID_LENGTH + 1 :]
    if (
        not presented.startswith(PREFIX)
        or presented[len(PREFIX) + ID_LENGTH : len(PREFIX) + ID_LENGTH + 1] != "_"
        or len(key_id) != ID_LENGTH
        or not all(c in _ID_CHARS for c in key_id)
        or not secret
    ):
        return None
    return key_id, secret


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8", "surrogateescape")).hexdigest()


def is_key_id(key_id: str) -> bool:
    return len(key_id) == ID_LENGTH and all(c in _ID_CHARS for c in key_id)


class KeyRegistry:
    def __init__(self, storage: Storage, ttl_s: float, defaults: FieldDefaults) -> None:
        self.storage = storage
        self.defaults = defaults
        self._cache: TTLCache[str, ApiKey | None] = TTLCache(maxsize=10_000, ttl=max(ttl_s, 1e-6))
        # The last record seen of each key, past its TTL: keys keep working through a
        # storage outage, as they were when last read.
        self._last: LRUCache[str, ApiKey] = LRUCache(maxsize=100_000)

    async def create(self, body: Any) -> tuple[ApiKey, str]:
        """A new key from a POST body, and its key string (shown this once)."""
        values = parse_fields(body, self.defaults, creating=True)
        key_id, secret, shown = new_key_string()
        key = ApiKey(
            id=key_id,
            secret_sha256=_hash(secret),
            disabled=values.pop("state", "active") == "disabled",
            created_at=int(time.time()),
            **values,
        )
        await self.storage.put_doc(KIND, key_id, key.stored())
        self._cache[key_id] = self._last[key_id] = key
        return key, shown

    async def get(self, key_id: str) -> ApiKey:
        key = await self._load(key_id) if is_key_id(key_id) else None
        if key is None:
            raise KeyNotFound(key_id)
        return key

    async def update(self, key_id: str, body: Any) -> ApiKey:
        key = await self.get(key_id)
        values = parse_fields(body, self.defaults, creating=False)
        if "state" in values:
            values["disabled"] = values.pop("state") == "disabled"
        key = replace(key, **values)
        await self.storage.put_doc(KIND, key_id, key.stored())
        self._cache[key_id] = self._last[key_id] = key
        return key

    async def delete(self, key_id: str) -> None:
        self._cache.pop(key_id, None)
        self._last.pop(key_id, None)
        if is_key_id(key_id):
            await self.storage.delete_doc(KIND, key_id)

    async def page(self, after: str | None, limit: int) -> tuple[list[ApiKey], str | None]:
        ids = [i for i in await self.storage.list_docs(KIND) if after is None or i > after]
        found = [key for key in [await self._load(i) for i in ids[:limit]] if key is not None]
        return found, (ids[limit - 1] if len(ids) > limit else None)

    async def verify(self, presented: str) -> ApiKey | None:
        """The key a presented string names, if its secret matches; None for an unknown id
        and a wrong secret alike, after the same work."""
        parts = split_key(presented)
        key_id, secret = parts if parts is not None else ("", presented)
        key = await self._load(key_id) if parts is not None else None
        expected = key.secret_sha256 if key is not None else _NO_HASH
        if not hmac.compare_digest(_hash(secret).encode(), expected.encode()) or key is None:
            return None
        return key

    async def _load(self, key_id: str) -> ApiKey | None:
        if key_id in self._cache:
            return self._cache[key_id]
        try:
            raw = await self.storage.get_doc(KIND, key_id)
        except StorageUnavailable:
            if key_id not in self._last:  # stale-if-error, as for templates
                raise
            return self._last[key_id]
        # Unknown ids are cached too: a flood of made-up keys must not reach storage each time.
        key = ApiKey.from_stored(raw) if raw is not None else None
        self._cache[key_id] = key
        if key is not None:
            self._last[key_id] = key
        return key
