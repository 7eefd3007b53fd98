"""GET|HEAD /t/{template}/{id}: the delivery route. HTTP in, variant out, per SPEC §3-§4.

Order matters: the signature is checked over the raw path and query before the query is
parsed; then the unsigned policy and the template's allow-list; then the 304 check, which
needs only metadata; only then is anything fetched or rendered.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from email.utils import format_datetime

from starlette.requests import Request
from starlette.responses import Response

from server import edge, signing, variants
from server.errors import InvalidParam, SignatureRequired
from server.names import TEMPLATE_NAME, validate_id, validate_template_name
from server.runtime import Runtime
from server.spec import parse_params, query_pairs
from server.templates import NO_TEMPLATE, Template

CACHE_VERSIONED = "public, max-age=31536000, immutable"
CACHE_DEFAULT = "public, max-age=86400, stale-while-revalidate=604800"


async def deliver(request: Request) -> Response:
    started = time.perf_counter()
    rt: Runtime = request.app.state.runtime
    raw_path = bytes(request.scope.get("raw_path") or request.url.path.encode())
    query = request.scope["query_string"].decode("latin-1")
    signed_string, sig = signing.split(raw_path.decode("latin-1"), query)
    if sig is not None:
        signing.verify(signed_string, sig, rt.settings.signing_keys)

    name = validate_template_name(request.path_params["template"])
    asset_id = validate_id(request.path_params["id"])
    url_params = query_pairs(query)
    url_params.pop("sig", None)
    if sig is None and "exp" in url_params:
        raise InvalidParam("exp", "exp only counts on a signed URL")
    template = NO_TEMPLATE if name == "_" else await rt.templates.get(name, rt.limits)
    if sig is None:
        _check_unsigned(rt, template, url_params)
    spec = parse_params({**template.params, **url_params}, rt.limits)
    seconds_left = signing.check_expiry(spec.exp)

    timings = variants.Timings()
    resolved = await variants.resolve(
        rt, asset_id, template, spec, request.headers.get("accept", ""), timings
    )
    headers = _cache_headers(resolved, template, spec.version is not None, seconds_left)
    headers.update(edge.tag_headers(asset_id, template.name))
    if _matches(request.headers.get("if-none-match"), headers["ETag"]):
        headers["X-Cache"] = "revalidated"
        _timing_headers(headers, timings, started)
        return Response(status_code=304, headers=headers)
    variant, source = await variants.fetch(rt, resolved, spec, timings)
    headers["X-Cache"] = source
    if variant.faces is not None:
        headers["X-Faces"] = str(variant.faces)
    _timing_headers(headers, timings, started)
    if not resolved.stale:  # storage is down: no index write to wait for
        await edge.remember(rt, raw_path.decode("latin-1"), query, asset_id, template.name)
    return Response(variant.body, media_type=variant.mime, headers=headers)


async def missing_template(request: Request) -> Response:
    """/t/photo.jpg: the commonest slip, a delivery URL without its template segment. Say so,
    with the URL it was probably meant to be, rather than a bare 404."""
    rest = request.path_params["rest"].lstrip("/")
    meant = f"/t/_/{rest}" if rest else "/t/_/{id}"
    raise InvalidParam(
        "template",
        "the template segment is missing: delivery URLs are /t/{template}/{id}, and template "
        f"must match {TEMPLATE_NAME} or be _ for none (e.g. {meant})",
    )


def _check_unsigned(rt: Runtime, template: Template, url_params: dict[str, str]) -> None:
    if rt.settings.unsigned_policy == "public-templates" and not template.public:
        what = "this template" if template is not NO_TEMPLATE else "a URL without a template"
        raise SignatureRequired(f"{what} needs a signed URL")
    if template is not NO_TEMPLATE:
        template.check_allowed(url_params)


def _cache_headers(
    resolved: variants.Resolved, template: Template, versioned: bool, seconds_left: int | None
) -> dict[str, str]:
    created = datetime.fromisoformat(resolved.meta.created_at.replace("Z", "+00:00"))
    policy = template.cache_control or (CACHE_VERSIONED if versioned else CACHE_DEFAULT)
    headers = {
        "ETag": f'"{resolved.key}"',
        "Last-Modified": format_datetime(created, usegmt=True),
        "Cache-Control": policy,
    }
    if seconds_left is not None:
        # A signed URL must not be served from any cache once it has expired.
        headers["Cache-Control"] = _cap_max_age(policy, seconds_left)
        expires = datetime.fromtimestamp(time.time() + seconds_left, UTC)
        headers["Expires"] = format_datetime(expires, usegmt=True)
    if resolved.negotiated:
        headers["Vary"] = "Accept"
    return headers


def _cap_max_age(policy: str, seconds_left: int) -> str:
    """The policy with max-age at most `seconds_left`, and without the directives that let a
    cache serve past it (immutable, stale-while-revalidate, stale-if-error)."""
    kept: list[str] = []
    for directive in (d.strip() for d in policy.split(",")):
        name, _, value = directive.partition("=")
        name = name.strip().lower()
        if name in ("immutable", "stale-while-revalidate", "stale-if-error", "max-age"):
            if name == "max-age" and value.strip().isascii() and value.strip().isdigit():
                seconds_left = min(seconds_left, int(value))
            continue
        if directive:
            kept.append(directive)
    return ", ".join([*kept, f"max-age={seconds_left}"])


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
