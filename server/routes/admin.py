"""Admin API plumbing (SPEC §5): bearer-token auth, bounded request bodies, list paging.

The routes live in assets.py, templates.py and urls.py; every answer is `no-store`.

One rule says whether a body is JSON, for every endpoint (`is_json`): Content-Type says so
(application/json, or any +json type), or Content-Type is missing, form-urlencoded or
text/plain (what `curl -d` and a fetch() of a string send when nobody said) and the body
starts with `{` or `[` after whitespace, which no image format does.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import re
from collections.abc import AsyncGenerator
from dataclasses import dataclass
from typing import Any

import orjson
from starlette.datastructures import FormData
from starlette.formparsers import MultiPartException, MultiPartParser
from starlette.requests import Request

from server.errors import BadRequest, InvalidParam, TooLarge, Unauthorized, UnsupportedMediaType
from server.runtime import Runtime

MULTIPART_OVERHEAD = 64 * 1024  # boundaries and part headers around the file
_UNDECLARED = frozenset({"", "application/x-www-form-urlencoded", "text/plain"})
_JSON_START = re.compile(rb"[ \t\r\n]*[{\[]")  # RFC 8259 whitespace, then an object or array
_ASK_FOR_JSON = "send a JSON object with Content-Type: application/json"


@dataclass(frozen=True, slots=True)
class JsonBody:
    """What read_upload_or_json read when the body was JSON by the rule, not image bytes."""

    value: Any


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


def public_base(request: Request) -> str:
    """The base of every absolute URL an answer gives (asset, delivery and result URLs):
    IMGCDN_PUBLIC_URL when set, else the request's own (scheme and Host, as uvicorn saw)."""
    rt: Runtime = request.app.state.runtime
    return rt.settings.public_url or str(request.base_url).rstrip("/")


def is_json(request: Request, body: bytes) -> bool:
    """The one rule every admin endpoint follows to decide that `body` is JSON."""
    media = media_type(request)
    if _declares_json(media):
        return True
    return media in _UNDECLARED and _JSON_START.match(body) is not None


def media_type(request: Request) -> str:
    return request.headers.get("content-type", "").partition(";")[0].strip().lower()


def _declares_json(media: str) -> bool:
    return media == "application/json" or (
        media.startswith("application/") and media.endswith("+json")
    )


def _shown_type(request: Request) -> str:
    media = media_type(request)
    return repr(request.headers["content-type"]) if media else "no Content-Type"


async def read_json(request: Request, max_bytes: int) -> Any:
    """A JSON endpoint's body: JSON by `is_json`, else a 415 naming the Content-Type."""
    body = await read_body(request, max_bytes)
    if not body.strip():  # nothing sent at all: a malformed request, whatever its type says
        raise BadRequest("empty body: this endpoint takes a JSON object", param="body")
    if not is_json(request, body):
        raise unsupported_body(request, "JSON")
    return parse_json(body)


def unsupported_body(request: Request, takes: str) -> UnsupportedMediaType:
    """The 415 for a body that is none of what an endpoint `takes`, naming what it got."""
    undeclared = media_type(request) in _UNDECLARED
    why = " and a body that does not start with { or [" if undeclared else ""
    # The advice only where JSON is what is taken: a multipart-only endpoint refuses it.
    ask = ": send a JSON object with Content-Type: application/json" if "JSON" in takes else ""
    return UnsupportedMediaType(
        f"this endpoint takes {takes}, got {_shown_type(request)}{why}{ask}"
    )


def parse_json(body: bytes) -> Any:
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise BadRequest(f"body is not valid JSON: {exc}", param="body") from None


async def read_upload(request: Request, max_bytes: int) -> bytes:
    """The uploaded image: the raw body, or the multipart field `file`. The byte limit is
    checked against Content-Length first and again while the body streams in. A JSON body
    (by `is_json`) is a 415 about the body: "not a JPEG" would send the caller astray."""
    multipart = media_type(request) == "multipart/form-data"
    cap = max_bytes + (MULTIPART_OVERHEAD if multipart else 0)
    body = await read_body(request, cap, max_bytes)
    if multipart:
        return await _multipart_file(request, body, max_bytes)
    if is_json(request, body):
        raise UnsupportedMediaType(
            f"this endpoint takes the image bytes (raw body or multipart field 'file'), and "
            f"the body is JSON ({_shown_type(request)}); to upload from a url or base64, "
            "POST /v1/assets with JSON"
        )
    return _image_bytes(body, max_bytes)


async def read_upload_or_json(
    request: Request, max_bytes: int, json_max_bytes: int
) -> bytes | JsonBody:
    """POST /v1/assets: image bytes as read_upload takes them, or a JSON body by `is_json`
    (up to `json_max_bytes`: base64 is a third larger than the image it carries)."""
    media = media_type(request)
    if media == "multipart/form-data":
        return await read_upload(request, max_bytes)
    # The limit to read under, before the body says which it is; is_json then decides.
    cap = json_max_bytes if _declares_json(media) or media in _UNDECLARED else max_bytes
    # A 413 names the limit of what the body said it is: JSON's when declared, else the image's.
    shown = json_max_bytes if _declares_json(media) else max_bytes
    body = await read_body(request, max(cap, max_bytes), shown)
    if is_json(request, body):
        return JsonBody(parse_json(body))
    return _image_bytes(body, max_bytes)


def _image_bytes(body: bytes, max_bytes: int) -> bytes:
    if not body:
        raise BadRequest("empty body: send the image bytes, or multipart field 'file'")
    if len(body) > max_bytes:
        raise TooLarge(f"upload is {len(body)} bytes, the limit is {max_bytes}")
    return body


async def parse_form(
    request: Request, raw: bytes, max_bytes: int, *, max_files: int, max_fields: int, param: str
) -> FormData:
    """A multipart body already read (and capped) as form data; malformed is a 400 naming
    `param`. Parts stay in memory up to `max_bytes`: they are read into memory next anyway,
    and starlette's 1 MB default would write a 2.5 MB image to a temp file and read it back
    (~1-2 ms). The caller closes the form."""

    async def replay() -> AsyncGenerator[bytes, None]:
        yield raw

    parser = MultiPartParser(
        request.headers, replay(), max_files=max_files, max_fields=max_fields,
        max_part_size=1 << 20,
    )  # fmt: skip
    parser.spool_max_size = max_bytes
    try:
        return await parser.parse()
    except MultiPartException as exc:
        raise BadRequest(f"malformed multipart body: {exc.message}", param=param) from None


async def _multipart_file(request: Request, body: bytes, max_bytes: int) -> bytes:
    form = await parse_form(request, body, max_bytes, max_files=1, max_fields=16, param="file")
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
    # isdigit alone takes '²' and other Unicode digits, which int() refuses: ASCII only.
    if declared is not None and declared.isascii() and declared.isdigit() and int(declared) > cap:
        raise TooLarge(f"body is {declared} bytes, the limit is {shown}")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > cap:
            raise TooLarge(f"body is over the {shown} byte limit")
        chunks.append(chunk)
    return b"".join(chunks)


def page_limit(request: Request) -> int:
    raw = request.query_params.get("limit", "100")
    if not (raw.isascii() and raw.isdigit()) or len(raw) > 4 or not 1 <= int(raw) <= 1000:
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
