"""The admin API (SPEC §5): bearer-token auth, assets. Every answer is `no-store`."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from collections.abc import AsyncGenerator
from typing import Any

import orjson
from starlette.formparsers import MultiPartException, MultiPartParser
from starlette.requests import Request
from starlette.responses import Response

from server import assets, remote, urls
from server.errors import BadRequest, InvalidParam, TooLarge, Unauthorized
from server.imaging.inspect import sniff
from server.json import NO_STORE, json_response
from server.runtime import Runtime
from server.spec import parse_params, validate_id, validate_template_name
from server.templates import NO_TEMPLATE

EXTENSION = {"jpeg": "jpg", "png": "png", "webp": "webp", "gif": "gif", "heif": "avif"}

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


async def post_asset(request: Request) -> Response:
    """An upload whose id the server picks: <prefix><content hash>.<ext>."""
    rt = authorize(request)
    content_type = request.headers.get("content-type", "")
    prefix = request.query_params.get("prefix", "")
    if content_type.startswith("application/json"):
        body = await read_json(request, rt.settings.max_source_bytes * 4 // 3 + 4096)
        if not isinstance(body, dict):
            raise BadRequest("expected a JSON object with url or base64", param="body")
        prefix = body.get("prefix", prefix)
        data = await _json_source(rt, body)
    else:
        data = await read_upload(request, rt.settings.max_source_bytes)
    if not isinstance(prefix, str) or (prefix and not prefix.endswith("/")):
        raise BadRequest("prefix is a folder ending in '/'", param="prefix")
    kind = sniff(data)
    asset_id = validate_id(f"{prefix}{hashlib.sha256(data).hexdigest()[:32]}.{EXTENSION[kind]}")
    meta, created = await assets.put_asset(rt, asset_id, data)
    return json_response(
        assets.public_json(meta, str(request.base_url)),
        status=201 if created else 200,
        headers={"Cache-Control": NO_STORE},
    )


async def _json_source(rt: Runtime, body: dict[str, Any]) -> bytes:
    if ("url" in body) == ("base64" in body):
        raise BadRequest("give exactly one of url or base64", param="body")
    if "base64" in body:
        encoded = body["base64"]
        if not isinstance(encoded, str):
            raise BadRequest("base64 must be a string", param="base64")
        encoded = encoded.split(",", 1)[1] if encoded.startswith("data:") else encoded
        try:
            data = base64.b64decode(encoded, validate=True)
        except (binascii.Error, ValueError):
            raise BadRequest("base64 is not valid base64", param="base64") from None
        if len(data) > rt.settings.max_source_bytes:
            raise TooLarge(
                f"image is {len(data)} bytes, the limit is {rt.settings.max_source_bytes}"
            )
        return data
    url = body["url"]
    if not isinstance(url, str):
        raise BadRequest("url must be a string", param="url")
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
    limit = _limit(request)
    after = _decode_cursor(request.query_params.get("cursor"))
    found = await rt.storage.list_assets(prefix, after, limit + 1)
    base = str(request.base_url)
    items = [assets.public_json(m, base) for m in found[:limit]]
    cursor = _encode_cursor(found[limit - 1].id) if len(found) > limit else None
    return json_response(
        {"items": items, "next_cursor": cursor}, headers={"Cache-Control": NO_STORE}
    )


async def delete_asset(request: Request) -> Response:
    rt = authorize(request)
    asset_id = validate_id(request.path_params["id"])
    await rt.storage.delete(asset_id)
    rt.meta_cache.pop(asset_id, None)
    rt.variants.purge(asset_id=asset_id)
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


async def put_template(request: Request) -> Response:
    rt = authorize(request)
    body = await read_json(request, 64 * 1024)
    template, created = await rt.templates.put(request.path_params["name"], body, rt.limits)
    rt.variants.purge(template=template.name)
    return json_response(
        template.to_json(), status=201 if created else 200, headers={"Cache-Control": NO_STORE}
    )


async def get_template(request: Request) -> Response:
    rt = authorize(request)
    name = validate_template_name(request.path_params["name"])
    template = await rt.templates.get(name, rt.limits)
    return json_response(template.to_json(), headers={"Cache-Control": NO_STORE})


async def delete_template(request: Request) -> Response:
    rt = authorize(request)
    name = validate_template_name(request.path_params["name"])
    await rt.templates.delete(name)
    rt.variants.purge(template=name)
    return Response(status_code=204, headers={"Cache-Control": NO_STORE})


async def list_templates(request: Request) -> Response:
    rt = authorize(request)
    after = _decode_cursor(request.query_params.get("cursor"))
    items, last = await rt.templates.page(after, _limit(request), rt.limits)
    return json_response(
        {"items": [t.to_json() for t in items], "next_cursor": last and _encode_cursor(last)},
        headers={"Cache-Control": NO_STORE},
    )


async def post_urls(request: Request) -> Response:
    """A ready delivery URL (versioned with the asset's etag, signed when keys exist), and a
    srcset when `widths` is given."""
    rt = authorize(request)
    body = await read_json(request, 64 * 1024)
    if not isinstance(body, dict) or not isinstance(body.get("id"), str):
        raise BadRequest('expected {"id": ..., "template"?, "params"?, ...}', param="id")
    asset_id = validate_id(body["id"])
    name = validate_template_name(body.get("template") or "_")
    template = NO_TEMPLATE if name == "_" else await rt.templates.get(name, rt.limits)
    params = _url_params(body.get("params"))
    meta = await assets.get_meta(rt, asset_id)
    params.setdefault("v", meta.etag[:16])
    parse_params({**template.params, **params}, rt.limits)  # 400 naming a bad parameter
    expires_in_s = body.get("expires_in_s")
    if expires_in_s is not None:
        if not isinstance(expires_in_s, int) or not 1 <= expires_in_s <= 366 * 86400:
            raise BadRequest("expires_in_s is whole seconds, 1..31622400", param="expires_in_s")
        if not rt.settings.signing_keys:
            raise BadRequest(
                "expiring URLs need IMGCDN_SIGNING_KEYS (an unsigned exp is not enforced)",
                param="expires_in_s",
            )
    base = str(request.base_url).rstrip("/")
    keys = rt.settings.signing_keys
    url, expires_at = urls.finish(urls.delivery_path(name, asset_id, params), keys, expires_in_s)
    answer: dict[str, Any] = {"url": base + url, "expires_at": expires_at}
    widths = body.get("widths")
    if widths is not None:
        if (
            not isinstance(widths, list)
            or not widths
            or not all(isinstance(w, int) and 1 <= w <= rt.settings.max_output_side for w in widths)
        ):
            raise BadRequest("widths is a list of integers in 1..max output side", param="widths")
        entries = []
        for width in sorted(set(widths)):
            sized = {**params, "w": str(width)}
            one, _ = urls.finish(urls.delivery_path(name, asset_id, sized), keys, expires_in_s)
            entries.append(f"{base}{one} {width}w")
        answer["srcset"] = ", ".join(entries)
    return json_response(answer, headers={"Cache-Control": NO_STORE})


async def post_purge(request: Request) -> Response:
    rt = authorize(request)
    body = await read_json(request, 4096)
    if not isinstance(body, dict) or len(body) != 1 or not ({"id", "template"} & set(body)):
        raise BadRequest('expected {"id": ...} or {"template": ...}', param="body")
    if "id" in body:
        asset_id = validate_id(str(body["id"]))
        rt.meta_cache.pop(asset_id, None)
        purged = rt.variants.purge(asset_id=asset_id)
    else:
        purged = rt.variants.purge(template=validate_template_name(str(body["template"])))
    return json_response({"purged": purged}, headers={"Cache-Control": NO_STORE})


def _url_params(raw: Any) -> dict[str, str]:
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise BadRequest("params is an object of parameter -> value", param="params")
    params = {str(k): str(v) for k, v in raw.items()}
    for forbidden in ("sig", "exp"):
        if forbidden in params:
            raise InvalidParam(forbidden, f"{forbidden} is added by the server")
    return params


def _limit(request: Request) -> int:
    raw = request.query_params.get("limit", "100")
    if not raw.isdigit() or not 1 <= int(raw) <= 1000:
        raise InvalidParam("limit", f"limit must be an integer in 1..1000, got {raw!r}")
    return int(raw)


def _encode_cursor(last: str) -> str:
    return base64.urlsafe_b64encode(last.encode()).decode().rstrip("=")


def _decode_cursor(cursor: str | None) -> str | None:
    if not cursor:
        return None
    try:
        return base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
    except (binascii.Error, UnicodeDecodeError):
        raise InvalidParam("cursor", "cursor is not one this server gave out") from None


async def read_json(request: Request, max_bytes: int) -> Any:
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > max_bytes:
            raise TooLarge(f"request body is over {max_bytes} bytes")
        chunks.append(chunk)
    try:
        return orjson.loads(b"".join(chunks))
    except orjson.JSONDecodeError as exc:
        raise BadRequest(f"body is not valid JSON: {exc}", param="body") from None


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
