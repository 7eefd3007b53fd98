"""GET|HEAD /r/{id}.{ext}?exp=..&sig=..: a processing result at its signed, expiring URL.

Order: the path and query are parsed (400), the signature checked (403 invalid_signature),
then the expiry (403 url_expired), all before any storage read. If-None-Match is answered
304 from the URL alone: the ETag is the result id, whose bytes never change, so a client
revalidating its copy costs no storage round trip (and works while storage is down).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from email.utils import format_datetime

from starlette.requests import Request
from starlette.responses import Response

from server import results
from server.errors import InvalidId, InvalidParam, InvalidSignature, ResultNotFound, UrlExpired
from server.runtime import Runtime

NAME = re.compile(r"(?P<id>[A-Za-z0-9_-]{16,64})\.(?P<ext>[a-z]{1,8})")
EXP = re.compile(r"[0-9]{1,12}")
FORMAT_OF = {ext: fmt for fmt, ext in results.EXTENSION.items()}


async def get_result(request: Request) -> Response:
    rt: Runtime = request.app.state.runtime
    name = NAME.fullmatch(request.path_params["name"])
    if name is None:
        raise InvalidId("a result URL is /r/{id}.{ext}, id 16..64 of A-Z a-z 0-9 _ -", param="id")
    result_id, ext = name["id"], name["ext"]
    if ext not in FORMAT_OF:
        raise InvalidParam("ext", f"ext must be one of {', '.join(FORMAT_OF)}")
    exp, sig = _query(request.scope["query_string"].decode("latin-1"))
    await results.verify(rt, f"/r/{result_id}.{ext}?exp={exp}", sig)
    left = exp - int(results.clock())
    if left <= 0:
        raise UrlExpired(f"this URL expired {-left} s ago")

    etag = f'"{result_id}.{ext}"'
    expires = datetime.fromtimestamp(exp, UTC)
    headers = {
        "ETag": etag,
        # Shared caches (nginx) may keep it, for no longer than the URL is valid.
        "Cache-Control": f"public, max-age={left}",
        "Expires": format_datetime(expires, usegmt=True),
    }
    if _matches(request.headers.get("if-none-match"), etag):
        return Response(status_code=304, headers=headers)
    found = await results.lookup(rt, result_id)
    if found is None or found.fmt != FORMAT_OF[ext]:
        raise ResultNotFound()
    if request.method == "HEAD":
        headers["Content-Length"] = str(found.bytes)
        return Response(b"", media_type=found.mime, headers=headers)
    body = await results.read(rt, found)
    return Response(body, media_type=found.mime, headers=headers)


def _query(query: str) -> tuple[int, str]:
    """(exp, sig) of a result URL's query: exactly those two, each once."""
    pairs: dict[str, str] = {}
    for part in query.split("&") if query else ():
        key, sep, value = part.partition("=")
        if key not in ("exp", "sig"):
            raise InvalidParam(key or "query", f"unknown parameter {key!r}: only exp and sig")
        if key in pairs or not sep:
            raise InvalidParam(key, f"{key} must be given once, with a value")
        pairs[key] = value
    if "sig" not in pairs:
        raise InvalidSignature("this URL is not signed", param="sig")
    raw_exp = pairs.get("exp")
    if raw_exp is None or not EXP.fullmatch(raw_exp):
        raise InvalidParam("exp", "exp must be the unix time the URL expires at")
    return int(raw_exp), pairs["sig"]


def _matches(if_none_match: str | None, etag: str) -> bool:
    if not if_none_match:
        return False
    if if_none_match.strip() == "*":
        return True
    # Weak comparison, as RFC 9110 asks for If-None-Match: a proxy may have weakened ours.
    return etag in (t.strip().removeprefix("W/") for t in if_none_match.split(","))
