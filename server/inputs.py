"""An image reference's bytes: the I/O half of imagerefs.py.

URLs go through remote.fetch, the SSRF guard uploads use; asset ids through the asset
registry and the originals cache the delivery path reads, confined to the caller's prefix.
The byte limit is checked where the bytes first appear (decoded base64, the fetched body).
"""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from server import assets, remote, variants
from server.errors import ImgcdnError, TooLarge
from server.imagerefs import Ref, check_id, rename
from server.runtime import Runtime


@dataclass(frozen=True, slots=True)
class Input:
    """An input known by its content hash; the bytes are read only if a render needs them."""

    sha256: bytes
    read: Callable[[], Awaitable[bytes]]


async def identify(rt: Runtime, ref: Ref, prefix: str) -> Input:
    """The input's content hash. A stored asset's is its etag (the sha256 of its bytes), so
    a request whose result exists reads no source byte; other inputs are in hand or fetched."""
    if ref.kind == "id":
        try:
            meta = await assets.get_meta(rt, check_id(ref, prefix))
        except ImgcdnError as exc:
            raise rename(exc, ref) from exc.__cause__

        async def read() -> bytes:
            try:
                return await variants.read_source(rt, meta)
            except ImgcdnError as exc:
                raise rename(exc, ref) from exc.__cause__

        return Input(bytes.fromhex(meta.etag), read)
    data = await load(rt, ref, prefix)

    async def given() -> bytes:
        return data

    return Input(hashlib.sha256(data).digest(), given)


async def load(rt: Runtime, ref: Ref, prefix: str, max_bytes: int | None = None) -> bytes:
    """The bytes behind `ref`, within the source byte limit (or an endpoint's own, lower
    `max_bytes`: a fetch stops there), or an error naming its field."""
    limit = min(rt.settings.max_source_bytes, max_bytes or rt.settings.max_source_bytes)
    if ref.kind == "bytes":
        assert isinstance(ref.value, bytes)
        if len(ref.value) > limit:
            raise TooLarge(f"{ref.path} is {len(ref.value)} bytes, the limit is {limit}")
        return ref.value
    try:
        if ref.kind == "url":
            assert isinstance(ref.value, str)
            s = rt.settings
            policy = remote.FetchPolicy(
                max_bytes=limit,
                timeout_s=s.source_timeout_s,
                allowed_hosts=s.source_hosts,
                allow_private=s.allow_private_sources,
            )
            data, _type = await remote.fetch(ref.value, policy)
            return data
        meta = await assets.get_meta(rt, check_id(ref, prefix))
        return await variants.read_source(rt, meta)
    except ImgcdnError as exc:
        raise rename(exc, ref) from exc.__cause__
