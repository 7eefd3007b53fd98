"""The templates routes (SPEC §5): create or replace, read, list, delete."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from server import edge
from server.json import NO_STORE, json_response
from server.names import validate_template_name
from server.routes.admin import authorize, decode_cursor, encode_cursor, page_limit, read_json


async def put_template(request: Request) -> Response:
    rt = authorize(request)
    body = await read_json(request, 64 * 1024)
    template, created = await rt.templates.put(request.path_params["name"], body, rt.limits)
    rt.variants.purge(template=template.name)
    await edge.purge(rt, edge.template_tag(template.name))
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
    await edge.purge(rt, edge.template_tag(name))
    return Response(status_code=204, headers={"Cache-Control": NO_STORE})


async def list_templates(request: Request) -> Response:
    rt = authorize(request)
    after = decode_cursor(request.query_params.get("cursor"))
    items, last = await rt.templates.page(after, page_limit(request), rt.limits)
    return json_response(
        {"items": [t.to_json() for t in items], "next_cursor": last and encode_cursor(last)},
        headers={"Cache-Control": NO_STORE},
    )
