"""GET|HEAD /t/{template}/{id}: the delivery route. HTTP in, variant out, per SPEC §4."""

from __future__ import annotations

import time
from datetime import datetime
from email.utils import format_datetime

from starlette.requests import Request
from starlette.responses import Response

from server import variants
from server.errors import NotFound
from server.runtime import Runtime
from server.spec import TransformSpec, parse_query, validate_id, validate_template_name

CACHE_VERSIONED = "public, max-age=31536000, immutable"
CACHE_DEFAULT = "public, max-age=86400, stale-while-revalidate=604800"


async def deliver(request: Request) -> Response:
    started = time.perf_counter()
    rt: Runtime = request.app.state.runtime
    template = validate_template_name(request.path_params["template"])
    asset_id = validate_id(request.path_params["id"])
    if template != "_":
        raise NotFound(f"no template {template!r}", param="template")
    spec = parse_query(request.scope["query_string"].decode("latin-1"), rt.limits)
    timings = variants.Timings()
    resolved = await variants.resolve(
        rt, asset_id, spec, request.headers.get("accept", ""), timings
    )
    headers = _cache_headers(resolved, spec)
    if _matches(request.headers.get("if-none-match"), headers["ETag"]):
        headers["X-Cache"] = "revalidated"
        _timing_headers(headers, timings, started)
        return Response(status_code=304, headers=headers)
    variant, source = await variants.fetch(rt, resolved, spec, timings)
    headers["X-Cache"] = source
    _timing_headers(headers, timings, started)
    return Response(variant.body, media_type=variant.mime, headers=headers)


def _cache_headers(resolved: variants.Resolved, spec: TransformSpec) -> dict[str, str]:
    created = datetime.fromisoformat(resolved.meta.created_at.replace("Z", "+00:00"))
    headers = {
        "ETag": f'"{resolved.key}"',
        "Last-Modified": format_datetime(created, usegmt=True),
        "Cache-Control": CACHE_VERSIONED if spec.version else CACHE_DEFAULT,
    }
    if resolved.negotiated:
        headers["Vary"] = "Accept"
    return headers


def _matches(if_none_match: str | None, etag: str) -> bool:
    if not if_none_match:
        return False
    if if_none_match.strip() == "*":
        return True
    # Weak comparison, as RFC 9110 asks for If-None-Match: a CDN may have weakened ours.
    tags = (t.strip().removeprefix("W/") for t in if_none_match.split(","))
    return etag in tags


def _timing_headers(headers: dict[str, str], timings: variants.Timings, started: float) -> None:
    total = (time.perf_counter() - started) * 1000
    phases = [f"{name};dur={ms:.1f}" for name, ms in timings.phases.items()]
    headers["Server-Timing"] = ", ".join([*phases, f"total;dur={total:.1f}"])
    headers["X-Processing-Time"] = f"{total:.1f}"
