"""Files the server ships and serves itself (/docs, /playground): from an allow-list, never a
directory, each with a strong ETag (a 304 for a browser that has it) and its page's headers.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from importlib.resources import files

from starlette.requests import Request
from starlette.responses import Response

STATIC_CACHE = "public, max-age=86400"


@dataclass(frozen=True, slots=True)
class Asset:
    body: bytes
    media_type: str
    etag: str


def asset(body: bytes, media_type: str) -> Asset:
    return Asset(body, media_type, '"' + hashlib.sha256(body).hexdigest()[:32] + '"')


@functools.cache
def packaged(package: str, name: str, media_type: str) -> Asset:
    """`name` in the `static/` folder of an installed package, read once per process."""
    return asset(files(package).joinpath("static", name).read_bytes(), media_type)


def serve(
    request: Request, found: Asset, cache_control: str, headers: Mapping[str, str]
) -> Response:
    """The file, or a 304 when the browser's copy is this one; `headers` on both."""
    sent = {
        "Cache-Control": cache_control,
        "ETag": found.etag,
        "X-Content-Type-Options": "nosniff",
        **headers,
    }
    if found.etag in request.headers.get("if-none-match", ""):
        return Response(status_code=304, headers=sent)
    return Response(found.body, media_type=found.media_type, headers=sent)
