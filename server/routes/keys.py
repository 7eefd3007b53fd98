"""The API keys routes (SPEC §6 "Keys"), for admins: create (the key string is answered this
once), list, read, change, delete."""

from __future__ import annotations

import asyncio

from starlette.requests import Request
from starlette.responses import Response

from server.errors import StateUnavailable
from server.json import NO_STORE, json_response
from server.keys import ApiKey
from server.routes.admin import authorize, decode_cursor, encode_cursor, page_limit, read_json
from server.runtime import Runtime

MAX_BODY = 16 * 1024
_HEADERS = {"Cache-Control": NO_STORE}


async def create_key(request: Request) -> Response:
    rt = authorize(request)
    key, shown = await rt.keys.create(await read_json(request, MAX_BODY))
    body = {**key.to_json(), "key": shown}
    return json_response(body, status=201, headers={**_HEADERS, "Location": f"/v1/keys/{key.id}"})


async def list_keys(request: Request) -> Response:
    rt = authorize(request)
    after = decode_cursor(request.query_params.get("cursor"))
    keys, last = await rt.keys.page(after, page_limit(request))
    # At once: against a Redis that does not answer, a page waits one state timeout in all.
    items = await asyncio.gather(*(_shown(rt, key) for key in keys))
    return json_response(
        {"items": items, "next_cursor": last and encode_cursor(last)}, headers=_HEADERS
    )


async def get_key(request: Request) -> Response:
    rt = authorize(request)
    key = await rt.keys.get(request.path_params["id"])
    return json_response(await _shown(rt, key), headers=_HEADERS)


async def patch_key(request: Request) -> Response:
    rt = authorize(request)
    key_id = request.path_params["id"]
    await rt.keys.get(key_id)  # 404 before reading a body for a key that is not there
    key = await rt.keys.update(key_id, await read_json(request, MAX_BODY))
    return json_response(await _shown(rt, key), headers=_HEADERS)


async def delete_key(request: Request) -> Response:
    rt = authorize(request)
    await rt.keys.delete(request.path_params["id"])
    return Response(status_code=204, headers=_HEADERS)


async def _shown(rt: Runtime, key: ApiKey) -> dict[str, object]:
    try:
        last_used = await rt.state.last_used(key.id)
    except StateUnavailable:  # informational: the registry still answers without it
        last_used = None
    return key.to_json(last_used)
