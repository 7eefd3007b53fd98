"""Seed 004 drop-in: POST /api/image/editing/image-cropping (AILabTools, SPEC §10).

The key is an imgcdn API key in the `ailabapi-api-key` header (auth.authenticate reads it),
with the processing API's scope, rate limit, quota and Idempotency-Key. Multipart `image`,
`width`, `height`: the image scaled to fit the box (up or down) and padded to exactly
width x height by the engine's resize (fit=contain). `retain_location` is where the scaled
image sits, from the very geometry the resize uses (imaging/geometry.py plan + pad_offset).
The result URL lives 24 hours (results.save's ttl_s). Every answer, errors included, is the
seed's envelope; see docs/migrating/ailabtools-cropping.md for each decision.
"""

from __future__ import annotations

import hashlib
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from server import auth, idempotency, process, results
from server.errors import BadRequest, ImgcdnError, TooLarge, UnsupportedFormat
from server.imagerefs import Ref
from server.imaging import geometry
from server.imaging.inspect import SourceInfo, probe
from server.json import NO_STORE, json_response
from server.ops import SIDE, STEP_PARAMS
from server.plan import compile_ops
from server.routes.admin import media_type, public_base, unsupported_body
from server.routes.bodies import read_request
from server.runtime import Runtime
from server.schema import Int, Obj

PATH = "/api/image/editing/image-cropping"
MAX_BYTES = 3_670_016  # the seed's "no more than 3.5 MB": 3.5 MiB
MAX_SIDE = 2000  # "less than 2000x2000px": each side at most 1999
KINDS = ("jpeg", "png", "bmp", "webp")  # the seed's JPEG JPG PNG BMP WEBP
URL_TTL_S = 24 * 3600  # "valid for 24 hours"
ALPHA_OUTPUT = ("png", "webp")  # outputs whose padding is transparent; JPEG's is white
FIELDS = Obj(
    {
        "width": Int(1, SIDE, "the box's width in pixels", cap="output_side"),
        "height": Int(1, SIDE, "the box's height in pixels", cap="output_side"),
    },
    frozenset({"width", "height"}),
    "Seed 004: the image (multipart field image) scaled into width x height and padded",
    title="image_cropping_request",
    ignored=frozenset({"api_key", "appkey"}),
)
NO_DETAIL = {"status_code": 200, "code": "", "code_message": "", "message": ""}


def envelope(
    request_id: str, status: int, detail: dict[str, Any], data: dict[str, Any] | None
) -> Response:
    body: dict[str, Any] = {
        "request_id": request_id,
        "log_id": request_id,  # what imgcdn's access log records the request under
        "error_code": 0 if status == 200 else status,
        "error_msg": detail.get("message", ""),
        "error_detail": {**detail, "status_code": status},
    }
    if data is not None:
        body["data"] = data
    return json_response(body, status=status, headers={"Cache-Control": NO_STORE})


def error_envelope(error: ImgcdnError, request_id: str = "") -> Response:
    """The seed's envelope for `error`: error_code and status_code are the HTTP status,
    error_detail.code imgcdn's code, its message in error_msg and error_detail, the field
    at fault in error_detail.param."""
    detail: dict[str, Any] = {
        "code": error.code,
        "code_message": error.message,
        "message": error.message,
    }
    if error.param is not None:
        detail["param"] = error.param
    answer = envelope(request_id, error.status, detail, None)
    answer.headers.update(error.headers)
    if error.retry_after is not None:
        answer.headers["Retry-After"] = str(error.retry_after)
    return answer


async def crop(request: Request) -> Response:
    """The image scaled into width x height, padded, at a URL valid 24 hours."""
    request_id = str(request.state.correlation_id)
    rt: Runtime = request.app.state.runtime
    if media_type(request) != "multipart/form-data":
        raise unsupported_body(request, "multipart/form-data (image, width, height)")
    body = await read_request(request, min(MAX_BYTES, rt.settings.max_source_bytes))
    caller = await auth.authenticate(request, "image.process", body.fields)
    fields = FIELDS.check(body.fields, "", body.text)
    if body.upload is None or body.upload_field != "image":
        raise BadRequest("the image goes in the multipart field image", param="image")
    data = body.upload
    box = (fields["width"], fields["height"])
    info = await rt.pool.run(lambda cancel: _checked(rt, data))
    fmt = process.output_format(info)
    # Scaled up or down to fit: the seed's retain_location is the image "after isoscaling
    # according to the specified width", so a small image grows into the box too.
    p = geometry.plan((info.width, info.height), box, "contain", True, *_caps(rt))
    x, y = geometry.pad_offset(p.scaled, p.box)
    background = "ffffff00" if fmt in ALPHA_OUTPUT else "ffffff"
    resize = {"width": box[0], "height": box[1], "fit": "contain", "enlarge": True}
    params = STEP_PARAMS["resize"].check({**resize, "background": background}, "")
    plan = compile_ops([("resize", params)], rt.limits, [""])
    base = public_base(request)

    async def run() -> Response:
        outcome = await process.run(
            rt, Ref("bytes", data, "image"), plan, caller.prefix, False, URL_TTL_S
        )
        result = outcome.result
        location = {"width": p.scaled[0], "height": p.scaled[1], "y": y, "x": x}
        url = results.public_url(rt, base, result)
        return envelope(request_id, 200, NO_DETAIL, {"url": url, "retain_location": location})

    digest = hashlib.sha256(b"seed004\0%d,%d\0" % box + hashlib.sha256(data).digest())
    return await idempotency.idempotent(
        request, caller, "image-cropping", None, digest.digest(), run
    )


def _caps(rt: Runtime) -> tuple[int, int]:
    options = rt.render_options
    return options.max_side, options.max_pixels


def _checked(rt: Runtime, data: bytes) -> SourceInfo:
    """The upload's header, within the seed's formats and size, else a 415 or 413."""
    try:
        info = probe(data, rt.source_limits)
    except ImgcdnError as exc:
        exc.param = exc.param or "image"
        raise
    if info.kind not in KINDS:
        raise UnsupportedFormat(
            f"image is {info.kind.upper()}: this endpoint takes JPEG, PNG, BMP or WEBP", "image"
        )
    if info.width >= MAX_SIDE or info.height >= MAX_SIDE:
        raise TooLarge(
            f"image is {info.width}x{info.height}: each side must be under {MAX_SIDE} px",
            "image",
        )
    return info


def openapi_paths() -> dict[str, Any]:
    """This endpoint's entry in /v1/openapi.json (openapi.document adds it)."""
    text, integer = {"type": "string"}, {"type": "integer"}
    detail = {
        "type": "object",
        "properties": {
            "status_code": integer,
            "code": text,
            "code_message": text,
            "message": text,
            "param": text,
        },
        "required": ["status_code", "code", "code_message", "message"],
    }
    location = {
        "type": "object",
        "properties": {k: integer for k in ("width", "height", "y", "x")},
        "required": ["width", "height", "y", "x"],
    }
    answer = {
        "type": "object",
        "properties": {
            "request_id": text,
            "log_id": text,
            "error_code": integer,
            "error_msg": text,
            "error_detail": detail,
            "data": {
                "type": "object",
                "properties": {"url": text, "retain_location": location},
                "required": ["url", "retain_location"],
            },
        },
        "required": ["request_id", "log_id", "error_code", "error_msg", "error_detail"],
    }
    binary = {"type": "string", "contentMediaType": "application/octet-stream"}
    content = {"application/json": {"schema": answer}}
    errors = (400, 401, 403, 409, 413, 415, 422, 429, 503)
    return {
        PATH: {
            "post": {
                "operationId": "post_api_image_editing_image_cropping",
                "summary": "Seed 004: scale an image into width x height and pad it",
                "tags": ["drop-in"],
                "security": [{"ailabapiKey": []}],
                "requestBody": {
                    "required": True,
                    "content": {
                        "multipart/form-data": {
                            "schema": {
                                "type": "object",
                                "properties": {"image": binary, "width": text, "height": text},
                                "required": ["image", "width", "height"],
                            }
                        }
                    },
                },
                "responses": {
                    "200": {"description": "data.url and data.retain_location", "content": content},
                    **{str(s): {"description": "error_code", "content": content} for s in errors},
                },
            }
        }
    }
