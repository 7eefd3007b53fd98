"""The admin API (SPEC §5): bearer-token auth, assets. Every answer is `no-store`."""

from __future__ import annotations

import hmac
from collections.abc import AsyncGenerator

from starlette.formparsers import MultiPartException, MultiPartParser
from starlette.requests import Request
from starlette.responses import Response

from server import assets
from server.errors import BadRequest, TooLarge, Unauthorized
from server.json import NO_STORE, json_response
from server.runtime import Runtime
from server.spec import validate_id

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


async def put_asset(request: Request) -> Response:
    rt = authorize(request)
    asset_id = validate_id(request.path_params["id"])
    data = await read_upload(request, rt.settings.max_source_bytes)
    meta, created = await assets.put_asset(rt, asset_id, data)
    return json_response(
        assets.public_json(meta, str(request.base_url)),
        status=201 if created else 200,
        headers={"Cache-Control": NO_STORE},
    )


async def get_asset(request: Request) -> Response:
    rt = authorize(request)
    asset_id = validate_id(request.path_params["id"])
    meta = await assets.get_meta(rt, asset_id)
    return json_response(
        assets.public_json(meta, str(request.base_url)), headers={"Cache-Control": NO_STORE}
    )


async def read_upload(request: Request, max_bytes: int) -> bytes:
    """The uploaded image: the raw body, or the multipart field `file`. The byte limit is
    checked against Content-Length first and again while the body streams in."""
    content_type = request.headers.get("content-type", "")
    multipart = content_type.startswith("multipart/form-data")
    cap = max_bytes + (MULTIPART_OVERHEAD if multipart else 0)
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > cap:
        raise TooLarge(f"upload is {declared} bytes, the limit is {max_bytes}")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > cap:
            raise TooLarge(f"upload is over the {max_bytes} byte limit")
        chunks.append(chunk)
    body = b"".join(chunks)
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
