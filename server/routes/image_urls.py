"""SPEC §6 "Assets and URLs", second half: deliver_url, signed_url, transformations.

deliver_url and signed_url are POST /v1/urls' ready_url with a seed `transform`
(transforms.py) in place of URL params, for an image inside the caller's key prefix;
transformation create / list are the template registry. Errors of the shared URL code are
named as the transform field they are about (`transform.width`, not `w`).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from server import assets, auth, idempotency
from server.errors import AssetNotFound, ImgcdnError, InvalidParam, TransformationExists
from server.json import NO_STORE, json_response
from server.names import TEMPLATE_NAME
from server.routes.admin import decode_cursor, encode_cursor, page_limit, read_json
from server.routes.image_assets import (
    IMAGE_ID,
    KEY,
    MAX_JSON,
    fingerprint,
    mapping,
    own_id,
    runtime,
)
from server.routes.processing import CREDENTIALS
from server.routes.urls import MAX_EXPIRES_IN_S, ready_url
from server.schema import Int, Obj, Text
from server.spec import parse_params
from server.templates import NO_TEMPLATE, Template
from server.transforms import TRANSFORM, from_params, to_params, transform_param

DELIVER_BODY = Obj(
    {"image_id": IMAGE_ID, "transform": TRANSFORM, "idempotency_key": KEY},
    frozenset({"image_id"}),
    "A delivery URL for a stored image: versioned, signed when the server has keys",
    title="deliver_url_request",
    ignored=CREDENTIALS,
)
SIGNED_BODY = Obj(
    {
        **DELIVER_BODY.fields,
        "expires_in_s": Int(1, MAX_EXPIRES_IN_S, "seconds the URL works (needs signing keys)"),
    },
    frozenset({"image_id", "expires_in_s"}),
    "A signed delivery URL that expires",
    title="signed_url_request",
    ignored=CREDENTIALS,
)
CREATE_BODY = Obj(
    {
        "name": Text(64, "the template name: /t/{name}/{id}", TEMPLATE_NAME, TEMPLATE_NAME),
        "transform": TRANSFORM,
        "idempotency_key": KEY,
    },
    frozenset({"name", "transform"}),
    "A named transform: a template, usable as /t/{name}/{id}",
    title="transformation_create_request",
    ignored=CREDENTIALS,
)
# Request bodies by path under /v1/image, for /v1/openapi.json (as processing.BODIES).
BODIES: dict[str, Obj] = {
    "deliver_url": DELIVER_BODY,
    "signed_url": SIGNED_BODY,
    "transformation/create": CREATE_BODY,
}


async def deliver_url(request: Request) -> Response:
    """{url}: the stored image through `transform`, versioned, signed when keys exist."""
    return await _url(request, DELIVER_BODY, "deliver_url")


async def signed_url(request: Request) -> Response:
    """{url, expires_at}: as deliver_url, signed and expiring after expires_in_s."""
    return await _url(request, SIGNED_BODY, "signed_url")


async def _url(request: Request, schema: Obj, endpoint: str) -> Response:
    rt, base = runtime(request)
    sent = await read_json(request, MAX_JSON)
    caller = await auth.authenticate(request, "image.urls", mapping(sent))
    fields = schema.check(sent, "")
    asset_id = own_id(caller, fields["image_id"], "image_id")
    name, params = to_params(fields.get("transform") or {})

    async def run() -> Response:
        try:
            await assets.get_meta(rt, asset_id)  # the image is the first thing to be missing
            template = NO_TEMPLATE if name == "_" else await rt.templates.get(name, rt.limits)
            made = await ready_url(rt, base, asset_id, template, params, fields.get("expires_in_s"))
        except ImgcdnError as exc:
            raise _renamed(exc) from exc.__cause__
        answer: dict[str, Any] = {"url": made["url"]}
        if made["expires_at"] is not None:
            answer["expires_at"] = _rfc3339(made["expires_at"])
        return json_response(answer, headers={"Cache-Control": NO_STORE})

    key = fields.get("idempotency_key")
    same = fingerprint(endpoint, mapping(sent), None)
    return await idempotency.idempotent(request, caller, endpoint, key, same, run)


async def create_transformation(request: Request) -> Response:
    """A template made of a transform, under a name not in use (409 when it is)."""
    rt, _base = runtime(request)
    sent = await read_json(request, MAX_JSON)
    caller = await auth.authenticate(request, "image.transformations", mapping(sent))
    fields = CREATE_BODY.check(sent, "")
    if "template" in fields["transform"]:
        raise InvalidParam(
            "transform.template", "a transformation cannot start from another template"
        )
    _name, params = to_params(fields["transform"])
    try:
        parse_params(params, rt.limits)  # the delivery parser's rules, named as the transform
    except ImgcdnError as exc:
        raise _renamed(exc) from None

    async def run() -> Response:
        template = await rt.templates.create(fields["name"], {"params": params}, rt.limits)
        if template is None:
            raise TransformationExists(fields["name"])
        return json_response(transformation(template), headers={"Cache-Control": NO_STORE})

    key = fields.get("idempotency_key")
    same = fingerprint("transformation/create", mapping(sent), None)
    return await idempotency.idempotent(request, caller, "transformation/create", key, same, run)


async def list_transformations(request: Request) -> Response:
    """Every template, its params read back as a transform."""
    rt, _base = runtime(request)
    await auth.authenticate(request, "image.transformations")
    after = decode_cursor(request.query_params.get("cursor"))
    items, last = await rt.templates.page(after, page_limit(request), rt.limits)
    answer = {
        "items": [transformation(t) for t in items],
        "next_cursor": encode_cursor(last) if last is not None else None,
    }
    return json_response(answer, headers={"Cache-Control": NO_STORE})


def transformation(template: Template) -> dict[str, Any]:
    """ImageTransformation. Templates keep the time of their last change only: that is
    `created_at` (the same for one made here and never edited)."""
    return {
        "id": template.name,
        "name": template.name,
        "transform": from_params(template.to_json()["params"]),
        "created_at": template.updated_at,
    }


def _renamed(error: ImgcdnError) -> ImgcdnError:
    """An error of the shared URL code, pointed at the field of this request it is about."""
    named = transform_param(error.param)
    if named is not None:
        error.param = named
        error.message = f"{named}: {error.message}"
        error.args = (error.message,)
    elif isinstance(error, AssetNotFound):
        error.param = "image_id"
    return error


def _rfc3339(unix: int) -> str:
    return datetime.fromtimestamp(unix, UTC).isoformat().replace("+00:00", "Z")
