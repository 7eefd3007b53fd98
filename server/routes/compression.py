"""Seed 001 drop-in: POST /api/v1/compress (SPEC §10; the seed names no path, this is ours).

The key is an imgcdn API key as `appkey` in the query, a urlencoded form field, a multipart
field or a JSON field (auth.authenticate reads all of them), with the processing API's
scope, rate limit, quota and Idempotency-Key. The image is `file` (multipart) xor
`image_url` (fetched SSRF-safely), within the seed's 10 MB. The answer is the image bytes;
an error is JSON `{"code": <HTTP status>, "message", "error": <imgcdn code>, "param"?}` with
only the statuses of the seed's HTTP table (STATUSES): see docs/migrating/compress.md.
The work is the engine's: a resize step and a compress step through compile_ops and
process.run, like /v1/image/*.
"""

from __future__ import annotations

import hashlib
from typing import Any
from urllib.parse import parse_qsl

import orjson
from starlette.requests import Request
from starlette.responses import Response

from server import auth, idempotency, inputs, process
from server.errors import BadRequest, ImgcdnError, InvalidParam
from server.imagerefs import Ref
from server.json import NO_STORE, json_response
from server.ops import FORMAT, SIDE
from server.plan import compile_ops
from server.routes.admin import media_type, read_body
from server.routes.bodies import Body, read_request
from server.runtime import Runtime
from server.schema import Int, Obj, Text

PATH = "/api/v1/compress"
MAX_BYTES = 10 * 1024 * 1024  # the seed: "large images up to 10MB" (MiB, as uploads count)
MAX_FORM_BYTES = 64 * 1024  # a urlencoded form carries a URL and a few numbers, no image
# The seed's HTTP table. Its "business codes" disagree (402 for a bad key, 403 for arrears,
# 500 for an unsupported image): the HTTP table wins, as the issue says.
STATUSES = frozenset({400, 401, 403, 429, 500, 503})
CREDENTIALS = frozenset({"appkey", "api_key"})
# The seed's 403 is about the key; imgcdn's other 403s (an image_url it may not fetch) are 400.
KEY_REFUSALS = frozenset({"key_disabled", "key_expired", "scope_denied"})


def _side(what: str) -> Int:
    return Int(1, SIDE, what, cap="output_side")


FIELDS = Obj(
    {
        "image_url": Text(4096, "the image to fetch", r"(?i)https?://\S+", "an http(s) URL"),
        "targetWidth": _side("exact output width; alone, the height follows the aspect"),
        "targetHeight": _side("exact output height; with targetWidth, cropped to fill"),
        # A bound, not a size: one past this server's largest side means no bound (clamped).
        "maxWidth": Int(1, SIDE, "largest output width, aspect kept, never enlarged"),
        "maxHeight": Int(1, SIDE, "largest output height, aspect kept, never enlarged"),
        "quality": Int(1, 95, "1..95 (the seed's range); default per format (jpeg 80)"),
        "format": FORMAT,
    },
    description="Seed 001: file (multipart) xor image_url, sizes, quality, format",
    title="compress_request",
    ignored=CREDENTIALS,
)


def error_envelope(error: ImgcdnError) -> Response:
    """Seed 001's JSON error: the status folded onto the seed's HTTP table (413/415, other
    client errors and a 403 not about the key are 400; 502/504 are 503, other server errors
    500), imgcdn's code
    in `error` and the field at fault in `param`."""
    status = error.status
    if status == 403 and error.code not in KEY_REFUSALS:
        status = 400
    if status not in STATUSES:
        status = 400 if status < 500 else 503 if status in (502, 504) else 500
    body: dict[str, Any] = {"code": status, "message": error.message, "error": error.code}
    if error.param is not None:
        body["param"] = error.param
    headers = {**error.headers, "Cache-Control": NO_STORE}
    if error.retry_after is not None:
        headers["Retry-After"] = str(error.retry_after)
    return json_response(body, status=status, headers=headers)


async def compress(request: Request) -> Response:
    """The image resized and encoded as asked, as bytes."""
    rt: Runtime = request.app.state.runtime
    limit = min(MAX_BYTES, rt.settings.max_source_bytes)
    body = await _read(request, limit)
    caller = await auth.authenticate(request, "image.process", body.fields)
    raw = dict(body.fields)
    if isinstance(raw.get("format"), str):  # "JPEG", "Png": the seed's users write either
        raw["format"] = raw["format"].strip().lower()
    fields = FIELDS.check(raw, "", body.text)
    steps = _steps(fields, rt.limits.max_side)
    plan = compile_ops(steps, rt.limits, [""] * len(steps))
    ref = await _source(rt, body, fields, caller.prefix, limit)

    async def run() -> Response:
        try:
            outcome = await process.run(rt, ref, plan, caller.prefix, with_bytes=True)
        except ImgcdnError as exc:
            if exc.param is None and exc.status in (413, 415, 422):
                exc.param = ref.path  # not an image, too many pixels: say which field
            raise
        result, data = outcome.result, outcome.body
        assert data is not None  # with_bytes
        headers = {
            "Cache-Control": NO_STORE,
            "X-Cache": "hit-result" if outcome.reused else "miss",
            "X-Image-Width": str(result.width),
            "X-Image-Height": str(result.height),
        }
        return Response(data, media_type=result.mime, headers=headers)

    digest = hashlib.sha256(b"seed001\0" + orjson.dumps(fields, option=orjson.OPT_SORT_KEYS))
    digest.update(hashlib.sha256(body.upload or b"").digest())
    return await idempotency.idempotent(request, caller, "compress", None, digest.digest(), run)


def _steps(fields: dict[str, Any], max_side: int) -> list[tuple[str, dict[str, Any]]]:
    target = {k: fields[k] for k in ("targetWidth", "targetHeight") if k in fields}
    bound = {k: fields[k] for k in ("maxWidth", "maxHeight") if k in fields}
    if target and bound:
        # Exact and bounded at once has no one answer (800 wide yet at most 300 high?).
        name = next(iter(bound))
        raise InvalidParam(name, f"{name} with targetWidth/targetHeight: send one kind of size")
    steps: list[tuple[str, dict[str, Any]]] = []
    if target:
        # "Exact" both ways, aspect kept (a key feature): cover, cropping the overflow.
        size = {"width": target.get("targetWidth"), "height": target.get("targetHeight")}
        params = {k: v for k, v in size.items() if v is not None}
        steps.append(("resize", {**params, "fit": "cover", "enlarge": True}))
    elif bound:
        size = {"width": bound.get("maxWidth"), "height": bound.get("maxHeight")}
        params = {k: min(v, max_side) for k, v in size.items() if v is not None}
        steps.append(("resize", {**params, "fit": "inside", "enlarge": False}))
    encoding: dict[str, Any] = {k: fields[k] for k in ("quality", "format") if k in fields}
    if encoding:
        steps.append(("compress", encoding))
    return steps


async def _read(request: Request, limit: int) -> Body:
    """Multipart (`file`), a urlencoded form (image_url) or JSON: the fields and the file."""
    if media_type(request) == "application/x-www-form-urlencoded":
        raw = await read_body(request, MAX_FORM_BYTES)
        try:
            pairs = parse_qsl(raw.decode("utf-8"), keep_blank_values=True, strict_parsing=True)
        except (UnicodeDecodeError, ValueError):
            raise BadRequest("the form body is not valid urlencoded UTF-8", param="body") from None
        fields: dict[str, Any] = {}
        for name, value in pairs:
            if name in fields:
                raise BadRequest(f"field {name} is given more than once", param=name)
            fields[name] = value
        return Body(fields, text=True)
    body = await read_request(request, limit)
    if body.upload is not None and body.upload_field != "file":
        raise BadRequest("the image goes in the multipart field file", param=body.upload_field)
    return body


async def _source(rt: Runtime, body: Body, fields: dict[str, Any], prefix: str, limit: int) -> Ref:
    url = fields.get("image_url")
    if body.upload is not None:
        if url is not None:
            raise InvalidParam("image_url", "send file or image_url, not both")
        return Ref("bytes", body.upload, "file")
    if url is None:
        raise InvalidParam("file", "file (multipart) or image_url is required")
    # Fetched here, not in process.run: the fetch stops at the seed's 10 MB.
    ref = Ref("url", url, "image_url", plain=True)
    return Ref("bytes", await inputs.load(rt, ref, prefix, max_bytes=limit), "image_url")


def openapi_paths() -> dict[str, Any]:
    """This endpoint's entry in /v1/openapi.json (openapi.document adds it)."""
    form: dict[str, Any] = {name: {"type": "string"} for name in (*FIELDS.fields, "appkey")}
    multipart = {**form, "file": {"type": "string", "contentMediaType": "application/octet-stream"}}
    error = {
        "type": "object",
        "properties": {
            "code": {"type": "integer", "enum": sorted(STATUSES)},
            "message": {"type": "string"},
            "error": {"type": "string", "description": "imgcdn's error code"},
            "param": {"type": "string", "description": "the field at fault"},
        },
        "required": ["code", "message", "error"],
    }
    json_body = FIELDS.schema()
    json_body["properties"]["appkey"] = {"type": "string"}
    content = {"application/json": {"schema": error}}
    return {
        PATH: {
            "post": {
                "operationId": "post_api_v1_compress",
                "summary": "Seed 001: compress and resize an image (file xor image_url)",
                "tags": ["drop-in"],
                "security": [{"appkeyQuery": []}],
                "requestBody": {
                    "required": True,
                    "content": {
                        "multipart/form-data": {
                            "schema": {"type": "object", "properties": multipart}
                        },
                        "application/x-www-form-urlencoded": {
                            "schema": {"type": "object", "properties": form}
                        },
                        "application/json": {"schema": json_body},
                    },
                },
                "responses": {
                    "200": {
                        "description": "The image bytes",
                        "content": {"image/*": {"schema": {"contentMediaType": "image/*"}}},
                    },
                    **{
                        str(s): {"description": f"JSON error, code {s}", "content": content}
                        for s in sorted(STATUSES)
                    },
                },
            }
        }
    }
