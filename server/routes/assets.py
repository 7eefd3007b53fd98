"""The assets routes (SPEC §5): upload, describe, list, fetch the original, delete."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from server import assets, edge, remote
from server.errors import BadRequest, TooLarge
from server.imagerefs import decode_base64
from server.imaging.inspect import sniff
from server.json import NO_STORE, json_response
from server.names import validate_id
from server.routes.admin import (
    JsonBody,
    authorize,
    decode_cursor,
    encode_cursor,
    page_limit,
    public_base,
    read_upload,
    read_upload_or_json,
)
from server.runtime import Runtime
from server.shapes import ASSET_JSON

# By kind: "heif" is AVIF (AV1); HEVC HEIF is its own kind, "heic".
EXTENSION = {"jpeg": "jpg", "png": "png", "webp": "webp", "gif": "gif", "heif": "avif"}
EXTENSION |= {"heic": "heic", "bmp": "bmp", "tiff": "tif"}


async def put_asset(request: Request) -> Response:
    rt = authorize(request)
    asset_id = validate_id(request.path_params["id"])
    data = await read_upload(request, rt.settings.max_source_bytes)
    meta, created = await assets.put_asset(rt, asset_id, data)
    if not created:
        await edge.purge(rt, edge.asset_tag(asset_id))  # new bytes: the edges drop the old
    return json_response(
        assets.public_json(meta, public_base(request)),
        status=201 if created else 200,
        headers={"Cache-Control": NO_STORE},
    )


async def post_asset(request: Request) -> Response:
    """An upload whose id the server picks: <prefix><content hash>.<ext>."""
    rt = authorize(request)
    prefix = request.query_params.get("prefix", "")
    max_bytes = rt.settings.max_source_bytes
    received = await read_upload_or_json(request, max_bytes, max_bytes * 4 // 3 + 4096)
    if isinstance(received, JsonBody):
        body = ASSET_JSON.check(received.value, "")
        prefix = body.get("prefix", prefix)
        data = await _json_source(rt, body)
    else:
        data = received
    if not isinstance(prefix, str) or (prefix and not prefix.endswith("/")):
        raise BadRequest("prefix is a folder ending in '/'", param="prefix")
    asset_id = assets.content_id(prefix, data, EXTENSION[sniff(data)])
    meta, created = await assets.put_asset(rt, asset_id, data)
    return json_response(
        assets.public_json(meta, public_base(request)),
        status=201 if created else 200,
        headers={"Cache-Control": NO_STORE},
    )


async def _json_source(rt: Runtime, body: dict[str, Any]) -> bytes:
    if ("url" in body) == ("base64" in body):
        raise BadRequest("give exactly one of url or base64", param="body")
    if "base64" in body:
        data = decode_base64(body["base64"], "base64")
        if len(data) > rt.settings.max_source_bytes:
            raise TooLarge(
                f"image is {len(data)} bytes, the limit is {rt.settings.max_source_bytes}"
            )
        return data
    url = body["url"]
    s = rt.settings
    policy = remote.FetchPolicy(
        max_bytes=s.max_source_bytes,
        timeout_s=s.source_timeout_s,
        allowed_hosts=s.source_hosts,
        allow_private=s.allow_private_sources,
    )
    data, _content_type = await remote.fetch(url, policy)
    return data


async def list_assets(request: Request) -> Response:
    rt = authorize(request)
    prefix = request.query_params.get("prefix", "")
    limit = page_limit(request)
    after = decode_cursor(request.query_params.get("cursor"))
    found, last = await assets.page(rt, prefix, after, limit)
    base = public_base(request)
    items = [assets.public_json(m, base) for m in found]
    cursor = encode_cursor(last) if last is not None else None
    return json_response(
        {"items": items, "next_cursor": cursor}, headers={"Cache-Control": NO_STORE}
    )


async def delete_asset(request: Request) -> Response:
    rt = authorize(request)
    asset_id = validate_id(request.path_params["id"])
    await assets.delete_asset(rt, asset_id)
    await edge.purge(rt, edge.asset_tag(asset_id))
    return Response(status_code=204, headers={"Cache-Control": NO_STORE})


async def get_original(request: Request) -> Response:
    rt = authorize(request)
    asset_id = validate_id(request.path_params["id"])
    meta = await rt.storage.head(asset_id)
    data = await rt.storage.get(meta, rt.settings.max_source_bytes)
    return Response(
        data,
        media_type=meta.mime,
        headers={"Cache-Control": NO_STORE, "ETag": f'"{meta.etag}"'},
    )


async def get_asset(request: Request) -> Response:
    rt = authorize(request)
    asset_id = validate_id(request.path_params["id"])
    meta = await assets.get_meta(rt, asset_id)
    return json_response(
        assets.public_json(meta, public_base(request)), headers={"Cache-Control": NO_STORE}
    )
