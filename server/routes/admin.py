"""Admin API plumbing (SPEC §5): bearer-token auth, bounded request bodies, list paging.

The routes live in assets.py, templates.py and urls.py; every answer is `no-store`.
"""

from __future__ import annotations

import base64
import binascii
import hmac
from collections.abc import AsyncGenerator
from typing import Any

import orjson
from starlette.formparsers import MultiPartException, MultiPartParser
from starlette.requests import Request

from server.errors import BadRequest, InvalidParam, TooLarge, Unauthorized
from server.runtime import Runtime

MULTIPART_OVERHEAD = 64 * 1024  # boundaries and part headers around the file


def authorize(request: Request) -> Runtime:
    rt: Runtime = request.app.state.runtime
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token:
        raise Unauthorized("admin API needs Authorization: Bearer <token>")
    presented = token.strip().encode()
    # Compare against every token, always, so timing says nothing about which one is close.
    matches = [hmac.compare_digest(presented, known) for known in rt.admin_tokens]
    if not any(matches):
        raise Unauthorized("admin token not recognised")
    return rt


async def read_upload(request: Request, max_bytes: int) -> bytes:
    """The uploaded image: the raw body, or the multipart field `file`. The byte limit is
    checked against Content-Length first and again while the body streams in."""
    content_type = request.headers.get("content-type", "")
    multipart = content_type.startswith("multipart/form-data")
    cap = max_bytes + (MULTIPART_OVERHEAD if multipart else 0)
    body = await read_body(request, cap, max_bytes)
    if not multipart:
        if not body:
            raise BadRequest("empty body: send the image bytes, or multipart field 'file'")
        return body
    return await _multipart_file(request, body, max_bytes)


async def _multipart_file(request: Request, body: bytes, max_bytes: int) -> bytes:
    async def replay() -> AsyncGenerator[bytes, None]:
        yield body

    parser = MultiPartParser(request.headers, replay(), max_files=1, max_fields=16)
    try:
        form = await parser.parse()
    except MultiPartException as exc:
        raise BadRequest(f"malformed multipart body: {exc.message}", param="file") from None
    try:
        upload = form.get("file")
        if upload is None or isinstance(upload, str):
            raise BadRequest("multipart body needs a file field named 'file'", param="file")
        data = await upload.read()
    finally:
        await form.close()  # the parser spooled parts to temp files
    if len(data) > max_bytes:
        raise TooLarge(f"upload is {len(data)} bytes, the limit is {max_bytes}")
    if not data:
        raise BadRequest("the 'file' field is empty", param="file")
    return data


async def read_body(request: Request, cap: int, limit: int | None = None) -> bytes:
    """The request body, refused (413) past `cap` bytes: from Content-Length before reading,
    and again while it streams in. `limit` is the figure the error names (default cap)."""
    shown = limit if limit is not None else cap
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > cap:
        raise TooLarge(f"body is {declared} bytes, the limit is {shown}")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > cap:
            raise TooLarge(f"body is over the {shown} byte limit")
        chunks.append(chunk)
    return b"".join(chunks)


async def read_json(request: Request, max_bytes: int) -> Any:
    body = await read_body(request, max_bytes)
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise BadRequest(f"body is not valid JSON: {exc}", param="body") from None


def page_limit(request: Request) -> int:
    raw = request.query_params.get("limit", "100")
    if not raw.isdigit() or not 1 <= int(raw) <= 1000:
        raise InvalidParam("limit", f"limit must be an integer in 1..1000, got {raw!r}")
    return int(raw)


def encode_cursor(last: str) -> str:
    return base64.urlsafe_b64encode(last.encode()).decode().rstrip("=")


def decode_cursor(cursor: str | None) -> str | None:
    if not cursor:
        return None
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        return base64.b64decode(padded, altchars=b"-_", validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        raise InvalidParam("cursor", "cursor is not one this server gave out") from None
