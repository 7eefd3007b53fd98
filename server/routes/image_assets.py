"""SPEC §6 "Assets and URLs" under seed 002's names: upload, get, list, delete.

The admin API's asset registry (assets.py), confined to the caller's key prefix: uploads
land under it, and an id outside it does not exist for the caller (404, never 403). Each
request: read the body, authenticate (scope), validate every field, then run under its
idempotency key. image_urls.py has the other half (delivery URLs, transformations).
"""

from __future__ import annotations

import hashlib
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response

from server import assets, auth, edge, idempotency
from server.errors import AssetNotFound, BadRequest, InvalidId, InvalidParam, TooLarge
from server.imagerefs import REF
from server.imaging.inspect import sniff
from server.json import NO_STORE, json_response
from server.names import MAX_ID_BYTES, validate_id
from server.routes.admin import (
    decode_cursor,
    encode_cursor,
    is_json,
    page_limit,
    parse_json,
    public_base,
    read_body,
    unsupported_body,
)
from server.routes.assets import EXTENSION
from server.routes.bodies import read_request
from server.routes.processing import COMMON, CREDENTIALS
from server.routes.urls import asset_url
from server.runtime import Runtime
from server.schema import Custom, Obj, Text
from server.storage.base import AssetMeta

MAX_JSON = 64 * 1024  # bodies without an image: a transform is a few hundred bytes


def _file(value: object, path: str, text: bool) -> bytes:
    """The image as base64 or a data: URL. The seed's "local file path" is the client's
    file: a string that is not base64 is a 400 here, never a path the server reads."""
    if isinstance(value, str) and value:
        try:
            ref = REF.check({"base64": value}, path, text)
        except InvalidParam:
            pass
        else:
            assert isinstance(ref.value, bytes)
            return ref.value
    raise InvalidParam(
        path,
        f"{path} must be the image as base64 or a data: URL (or a multipart file part); "
        "a path is never read on the server",
    )


KEY = COMMON["idempotency_key"]
IMAGE_ID = Text(MAX_ID_BYTES, "a stored image's id (ImageAsset.id)")
UPLOAD_BODY = Obj(
    {
        "file": Custom(_file, {"type": "string", "format": "byte"}, "base64 or a data: URL"),
        "filename": Text(
            255, "echoed in the answer", r"[^\x00-\x1f\x7f-\x9f/\\]+", "without / \\ or controls"
        ),
        "idempotency_key": KEY,
    },
    description="Store an image (multipart field file or image, or base64 in JSON)",
    title="upload_request",
    ignored=CREDENTIALS,
)
DELETE_BODY = Obj({"idempotency_key": KEY}, title="delete_request", ignored=CREDENTIALS)
# Request bodies by path under /v1/image, for /v1/openapi.json (as processing.BODIES).
BODIES: dict[str, Obj] = {
    "upload": UPLOAD_BODY,
    "delete/{id}": DELETE_BODY,
}


def own_id(caller: auth.Caller, raw: str, param: str) -> str:
    """An asset id the caller may use: well-formed, and inside its key's prefix. Another
    prefix's id does not exist for this caller: 404, so nothing tells it the id is taken."""
    try:
        asset_id = validate_id(raw)
    except InvalidId as exc:
        said = exc.message if param == "id" else f"{param}: {exc.message}"  # "id must ..."
        raise InvalidId(said, param=param) from None
    if not asset_id.startswith(caller.prefix):
        missing = AssetNotFound(asset_id)
        missing.param = param
        raise missing
    return asset_id


def upload_id(caller: auth.Caller, data: bytes) -> str:
    """Where an upload lands: POST /v1/assets' id rule under the caller's prefix. An image
    of no accepted kind is a 415 here, before anything is stored."""
    return assets.content_id(caller.prefix, data, EXTENSION[sniff(data)])


def image_asset(rt: Runtime, base: str, meta: AssetMeta) -> dict[str, Any]:
    """ImageAsset: the admin API's asset answer, its url a working (signed) delivery URL."""
    return {**assets.public_json(meta, base), "url": asset_url(rt, base, meta)}


async def upload(request: Request) -> Response:
    rt, base = runtime(request)
    body = await read_request(request, rt.settings.max_source_bytes)
    caller = await auth.authenticate(request, "image.upload", body.fields)
    fields = UPLOAD_BODY.check(body.fields, "", body.text)
    if body.upload is not None and "file" in fields:
        raise BadRequest("the image is both a file part and a file field: send one", "file")
    data = body.upload if body.upload is not None else fields.get("file")
    if data is None:
        raise InvalidParam("file", "file is required: a multipart file part, or base64")
    if len(data) > rt.settings.max_source_bytes:
        raise TooLarge(f"file is {len(data)} bytes, the limit is {rt.settings.max_source_bytes}")
    asset_id = upload_id(caller, data)

    async def run() -> Response:
        meta, _created = await assets.put_asset(rt, asset_id, data)
        answer = image_asset(rt, base, meta)
        if "filename" in fields:
            answer["filename"] = fields["filename"]
        return json_response(answer, headers={"Cache-Control": NO_STORE})

    key = fields.get("idempotency_key")
    return await idempotency.idempotent(
        request, caller, "upload", key, fingerprint("upload", body.fields, body.upload), run
    )


async def get_image(request: Request) -> Response:
    rt, base = runtime(request)
    caller = await auth.authenticate(request, "image.read")
    meta = await assets.get_meta(rt, own_id(caller, request.path_params["id"], "id"))
    return json_response(image_asset(rt, base, meta), headers={"Cache-Control": NO_STORE})


async def list_images(request: Request) -> Response:
    rt, base = runtime(request)
    caller = await auth.authenticate(request, "image.read")
    limit = page_limit(request)
    after = decode_cursor(request.query_params.get("cursor"))
    found, last = await assets.page(rt, caller.prefix, after, limit)
    answer = {
        "items": [image_asset(rt, base, meta) for meta in found],
        "next_cursor": encode_cursor(last) if last is not None else None,
    }
    return json_response(answer, headers={"Cache-Control": NO_STORE})


async def delete_image(request: Request) -> Response:
    """200 {"ok": true} whether or not the asset was there: deleting is idempotent, and an
    id outside the caller's prefix is, for it, an id that is not there."""
    rt, _base = runtime(request)
    raw = await read_body(request, MAX_JSON)
    sent: Any = {}
    if raw.strip():
        if not is_json(request, raw):
            raise unsupported_body(request, "no body, or JSON {idempotency_key}")
        sent = parse_json(raw)
    caller = await auth.authenticate(request, "image.delete", mapping(sent))
    fields = DELETE_BODY.check(sent, "")
    try:
        asset_id: str | None = own_id(caller, request.path_params["id"], "id")
    except AssetNotFound:
        asset_id = None

    async def run() -> Response:
        if asset_id is not None:
            await assets.delete_asset(rt, asset_id)
            await edge.purge(rt, edge.asset_tag(asset_id))
        return json_response({"ok": True}, headers={"Cache-Control": NO_STORE})

    same = fingerprint("delete", {"id": request.path_params["id"]}, None)
    key = fields.get("idempotency_key")
    return await idempotency.idempotent(request, caller, "delete", key, same, run)


def runtime(request: Request) -> tuple[Runtime, str]:
    rt: Runtime = request.app.state.runtime
    return rt, public_base(request)


def mapping(sent: Any) -> dict[str, Any]:
    return sent if isinstance(sent, dict) else {}


def fingerprint(endpoint: str, fields: dict[str, Any], upload: bytes | None) -> bytes:
    """What makes two requests the same one: the fields as sent (credentials and the
    idempotency key aside) and the uploaded bytes."""
    kept = {k: v for k, v in fields.items() if k not in CREDENTIALS | {"idempotency_key"}}
    digest = hashlib.sha256(endpoint.encode() + b"\0")
    digest.update(orjson.dumps(kept, option=orjson.OPT_SORT_KEYS, default=repr))
    if upload is not None:
        digest.update(hashlib.sha256(upload).digest())
    return digest.digest()
