"""What clients ask of delivery URLs: a ready (signed, versioned) URL, and purges."""

from __future__ import annotations

from typing import Any, TypeGuard

from starlette.requests import Request
from starlette.responses import Response

from server import assets, edge, urls, variants
from server.errors import BadRequest, InvalidParam, ParamNotAllowed
from server.json import NO_STORE, json_response
from server.names import validate_id, validate_template_name
from server.routes.admin import authorize, public_base, read_json
from server.runtime import Runtime
from server.shapes import PURGE, URLS
from server.spec import parse_params
from server.storage.base import AssetMeta
from server.templates import NO_TEMPLATE, Template, scalar

MAX_EXPIRES_IN_S = 366 * 86400  # a year, leap or not


async def post_urls(request: Request) -> Response:
    """A ready delivery URL (versioned with the asset's etag, signed when keys exist), and a
    srcset when `widths` is given."""
    rt = authorize(request)
    body = _checked(await read_json(request, 64 * 1024))
    asset_id = validate_id(body["id"])
    name = validate_template_name(body.get("template") or "_")
    template = NO_TEMPLATE if name == "_" else await rt.templates.get(name, rt.limits)
    params = _url_params(body.get("params"))
    base = public_base(request)
    answer = await ready_url(
        rt, base, asset_id, template, params, body.get("expires_in_s"), body.get("widths")
    )
    return json_response(answer, headers={"Cache-Control": NO_STORE})


async def ready_url(
    rt: Runtime,
    base: str,
    asset_id: str,
    template: Template,
    params: dict[str, str],
    expires_in_s: object = None,
    widths: object = None,
) -> dict[str, Any]:
    """`{"url", "expires_at"}` (and `"srcset"` for `widths`) for an asset through a template:
    versioned with the asset's etag, checked by the delivery parser, signed when the server
    has keys. POST /v1/urls and the processing API's deliver_url / signed_url both call it.
    Errors name URL params (`w`) and `expires_in_s`, `widths`, `template`."""
    meta = await assets.get_meta(rt, asset_id)
    keys = rt.settings.signing_keys
    if keys or template is NO_TEMPLATE or "v" in template.allow:
        params.setdefault("v", meta.etag[:16])
    parse_params({**template.params, **params}, rt.limits)  # 400 naming a bad parameter
    if not keys:
        _check_unsigned_works(rt, template, params)
    if expires_in_s is not None:
        if not _whole(expires_in_s) or not 1 <= expires_in_s <= MAX_EXPIRES_IN_S:
            raise BadRequest(
                f"expires_in_s is whole seconds, 1..{MAX_EXPIRES_IN_S}", param="expires_in_s"
            )
        if not keys:
            raise BadRequest(
                "expiring URLs need IMGCDN_SIGNING_KEYS (an unsigned exp is not enforced)",
                param="expires_in_s",
            )
    expires = expires_in_s if isinstance(expires_in_s, int) else None
    name = template.name
    url, expires_at = urls.finish(urls.delivery_path(name, asset_id, params), keys, expires)
    answer: dict[str, Any] = {"url": base + url, "expires_at": expires_at}
    if widths is not None:
        if (
            not isinstance(widths, list)
            or not widths
            or not all(_whole(w) and 1 <= w <= rt.settings.max_output_side for w in widths)
        ):
            raise BadRequest("widths is a list of integers in 1..max output side", param="widths")
        entries = []
        for width in sorted(set(widths)):
            sized = {**params, "w": str(width)}
            one, _ = urls.finish(urls.delivery_path(name, asset_id, sized), keys, expires)
            entries.append(f"{base}{one} {width}w")
        answer["srcset"] = ", ".join(entries)
    return answer


async def post_purge(request: Request) -> Response:
    """Drop the cached variants of one asset or one template, here and at the edges."""
    rt = authorize(request)
    body = PURGE.check(await read_json(request, 4096), "")
    if len(body) != 1:
        raise BadRequest('expected {"id": ...} or {"template": ...}', param="body")
    if "id" in body:
        asset_id = validate_id(body["id"])
        purged = await variants.purge(rt, asset_id=asset_id)
        tag = edge.asset_tag(asset_id)
    else:
        name = validate_template_name(body["template"])
        purged = await variants.purge(rt, template=name)
        tag = edge.template_tag(name)
    answer = {"purged": purged}
    if rt.settings.edge_purge_urls:
        answer["edge_purged"] = await edge.purge(rt, tag)  # nginx entries removed
    return json_response(answer, headers={"Cache-Control": NO_STORE})


def asset_url(rt: Runtime, base: str, meta: AssetMeta) -> str:
    """An asset's plain delivery URL, as ready_url writes one with no params: versioned, and
    signed when the server has keys, so it works under either unsigned policy."""
    path = urls.delivery_path("_", meta.id, {"v": meta.etag[:16]})
    url, _ = urls.finish(path, rt.settings.signing_keys, None)
    return base + url


def _checked(raw: Any) -> dict[str, Any]:
    try:
        return URLS.check(raw, "")
    except InvalidParam as exc:
        # The param stays `widths` as it always was (the message names the item's index).
        if exc.param is not None and exc.param.startswith("widths["):
            exc.param = "widths"
        raise


def _whole(value: object) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)  # JSON true is no number


def _check_unsigned_works(rt: Runtime, template: Template, params: dict[str, str]) -> None:
    """Without keys the URL goes out unsigned: refuse to hand out one that would not work."""
    if rt.settings.unsigned_policy == "public-templates" and not template.public:
        raise BadRequest(
            "this URL would need a signature: set IMGCDN_SIGNING_KEYS or use a public template",
            param="template",
        )
    if template is not NO_TEMPLATE:
        try:
            template.check_allowed(params)
        except ParamNotAllowed as exc:
            raise BadRequest(
                f"{exc.message} (unsigned URL: no IMGCDN_SIGNING_KEYS)", param=exc.param
            ) from None


def _url_params(raw: Any) -> dict[str, str]:
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise BadRequest("params is an object of parameter -> value", param="params")
    params = {str(k): scalar(f"params.{k}", v) for k, v in raw.items()}
    for forbidden in ("sig", "exp"):
        if forbidden in params:
            raise InvalidParam(forbidden, f"{forbidden} is added by the server")
    return params
