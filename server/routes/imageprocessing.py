"""Seed 000 drop-in: POST /api/v1/image-processing/{operation} and POST /image-processing.

The key is an imgcdn API key wherever auth.authenticate looks (the seed puts it in the
`api_key` query), with the processing API's scope, rate limit, quota, byte limits and
Idempotency-Key. The work is the processing API's: the request becomes ops.py steps
(imageprocessing_request.py), compiled by plan.compile_ops and run by process.run. Answers
are the image bytes with `X-Processing-Time` and `X-Correlation-ID`, or the seed's JSON
envelope when asked; every error is `{success: false, error: <imgcdn code>, details:
<message>, param, correlationId, timestamp}` with the real HTTP status.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response

from server import auth, idempotency, inputs, process, results
from server.errors import ImgcdnError, InvalidParam, UnknownOperation
from server.imagerefs import Ref
from server.imaging.inspect import SourceInfo, probe
from server.imaging.metadata import describe
from server.imaging.vips import Cancel
from server.json import NO_STORE, json_response
from server.plan import compile_ops
from server.routes import imageprocessing_request as seed
from server.routes.admin import public_base
from server.routes.bodies import Body, read_request
from server.runtime import Runtime
from server.spec import LOSSY

FORM_JSON = ("operations", "output")  # in a multipart form, these fields are JSON text


def correlation_id(request: Request) -> str:
    """The request's id as app.py's middleware chose it (the client's X-Correlation-ID when
    it sent a usable one): the same in the header, the JSON body and the access log."""
    return str(request.scope["state"]["correlation_id"])


def error_envelope(error: ImgcdnError, cid: str) -> Response:
    """Seed 000's error body around imgcdn's code and message, with the real status."""
    body = {
        "success": False,
        "error": error.code,
        "details": error.message,
        "param": error.param,
        "correlationId": cid,
        "timestamp": _now(),
    }
    headers = {"Cache-Control": NO_STORE, **error.headers}
    if error.retry_after is not None:
        headers["Retry-After"] = str(error.retry_after)
    return json_response(body, status=error.status, headers=headers)


async def single(request: Request) -> Response:
    """One operation (the path's) on one image: multipart `image` or `image_url`."""
    began, cid = time.perf_counter(), correlation_id(request)
    operation = request.path_params["operation"]
    if operation not in seed.ENDPOINTS:
        raise UnknownOperation(
            f"no operation {operation!r}; the operations are {', '.join(seed.ENDPOINTS)}"
        )
    scope = "image.metadata" if operation == "metadata" else "image.process"
    rt, body, caller = await _begin(request, scope)
    fields = seed.SINGLE.check(body.fields, "", body.text)
    ref = _source(fields, body)
    if operation == "metadata":
        run = _metadata(rt, ref, caller.prefix, began, cid)
        return await _keyed(request, caller, body, fields, cid, run)
    steps, paths = seed.single_steps(operation, fields)
    return await _transform(request, rt, caller, body, fields, ref, steps, paths, began, cid)


async def pipeline(request: Request) -> Response:
    """`operations` in order on one image, encoded once at the end as `output` says."""
    began, cid = time.perf_counter(), correlation_id(request)
    rt, body, caller = await _begin(request, "image.process")
    fields = seed.PIPELINE.check(body.fields, "", body.text)
    steps, paths = seed.pipeline_steps(fields["operations"])
    ref = _source(fields, body)
    return await _transform(request, rt, caller, body, fields, ref, steps, paths, began, cid)


async def _begin(request: Request, scope: str) -> tuple[Runtime, Body, auth.Caller]:
    rt: Runtime = request.app.state.runtime
    body = await read_request(request, rt.settings.max_source_bytes)
    if body.text:
        for name in FORM_JSON:
            if isinstance(body.fields.get(name), str):
                try:
                    body.fields[name] = orjson.loads(body.fields[name])
                except orjson.JSONDecodeError as exc:
                    raise InvalidParam(name, f"{name} must be JSON text: {exc}") from None
    caller = await auth.authenticate(request, scope, body.fields)
    return rt, body, caller


def _source(fields: dict[str, Any], body: Body) -> Ref:
    given: list[str] = [k for k in ("image", "image_url") if k in fields]
    if body.upload is not None:
        given.insert(0, body.upload_field)
    if len(given) > 1:
        raise InvalidParam(given[1], f"send one image: {given[0]} or {given[1]}, not both")
    if not given:
        raise InvalidParam("image", "image (a file, or base64 in JSON) or image_url is required")
    if body.upload is not None:
        return Ref("bytes", body.upload, body.upload_field)
    if "image" in fields:
        ref: Ref = fields["image"]
        return ref
    url = fields["image_url"]
    if not url.lower().startswith(("http://", "https://")):
        raise InvalidParam("image_url", "image_url must be an http(s) URL")
    return Ref("url", url, "image_url", plain=True)


async def _transform(
    request: Request,
    rt: Runtime,
    caller: auth.Caller,
    body: Body,
    fields: dict[str, Any],
    ref: Ref,
    steps: list[seed.Step],
    paths: list[str],
    began: float,
    cid: str,
) -> Response:
    final = seed.encoding(fields)
    plan = compile_ops([*steps, ("compress", final)], rt.limits, [*paths, ""])
    as_json = seed.wants_json(
        fields, request.query_params.get("response"), request.headers.get("accept", "")
    )
    base = public_base(request)

    async def run() -> Response:
        data = await inputs.load(rt, ref, caller.prefix)
        info, meta = await _inspect(rt, data, as_json)
        fmt = plan.fmt or process.output_format(info)
        chosen = replace(plan, fmt=fmt)
        if chosen.quality is None and fmt in LOSSY:
            chosen = replace(chosen, quality=seed.DEFAULT_QUALITY)
        outcome = await process.run(
            rt, Ref("bytes", data, ref.path), chosen, caller.prefix, with_bytes=True
        )
        assert outcome.body is not None  # with_bytes
        if not as_json:
            headers = _headers(began, cid)
            headers["X-Image-Width"] = str(outcome.result.width)
            headers["X-Image-Height"] = str(outcome.result.height)
            return Response(outcome.body, media_type=outcome.result.mime, headers=headers)
        url = results.public_url(rt, base, outcome.result)
        answer = seed.described(outcome.result, outcome.body, url, chosen, len(data), meta, steps)
        return _envelope(answer, began, cid)

    return await _keyed(request, caller, body, fields, cid, run)


async def _inspect(rt: Runtime, data: bytes, full: bool) -> tuple[SourceInfo, dict[str, Any]]:
    """The source's header (its kind decides the output format), and its metadata groups
    when the answer is JSON: header and EXIF only, no pixel decode."""
    limits = rt.source_limits

    def job(cancel: Cancel) -> tuple[SourceInfo, dict[str, Any]]:
        info = probe(data, limits)
        return info, (describe(data, info) if full else {})

    return await rt.pool.run(job)


def _metadata(rt: Runtime, ref: Ref, prefix: str, began: float, cid: str) -> Any:
    async def run() -> Response:
        data = await inputs.load(rt, ref, prefix)
        info, meta = await _inspect(rt, data, True)
        mime = info.mime
        answer = {
            "size_bytes": len(data),
            "dimensions": {"width": meta["width"], "height": meta["height"]},
            "format_info": {
                "format": meta["format"],
                "mime": mime,
                "frames": meta["frames"],
                "has_alpha": meta["has_alpha"],
                "color_space": meta["color_space"],
                "orientation": meta["orientation"],
            },
            "metadata": {name: meta["exif"].get(name, {}) for name in seed.GROUPS},
        }
        return _envelope(answer, began, cid)

    return run


def _envelope(data: dict[str, Any], began: float, cid: str) -> Response:
    headers = _headers(began, cid)
    body = {
        "success": True,
        "data": data,
        "processingTime": _elapsed_ms(began),
        "timestamp": _now(),
        "correlationId": cid,
    }
    return json_response(body, headers=headers)


async def _keyed(
    request: Request,
    caller: auth.Caller,
    body: Body,
    fields: dict[str, Any],
    cid: str,
    run: Any,
) -> Response:
    """`run` under the request's Idempotency-Key (a 4xx is kept and replayed in the seed's
    envelope, as app.py answers this path; a 5xx is not kept)."""
    keyed = "idempotency_key" in fields or "idempotency-key" in request.headers
    fingerprint = _fingerprint(request, body, fields) if keyed else b""
    response = await idempotency.idempotent(
        request, caller, request.url.path, fields.get("idempotency_key"), fingerprint, run
    )
    return response


def _fingerprint(request: Request, body: Body, fields: dict[str, Any]) -> bytes:
    """The request as understood: path, fields, upload, and the answer's form (the
    `response` query and Accept choose JSON or bytes, so they make another request)."""
    kept = {k: v for k, v in body.fields.items() if k not in seed.CREDENTIALS | {"idempotency_key"}}
    digest = hashlib.sha256(request.url.path.encode() + b"\0")
    digest.update(orjson.dumps(kept, option=orjson.OPT_SORT_KEYS, default=repr))
    as_json = seed.wants_json(
        fields, request.query_params.get("response"), request.headers.get("accept", "")
    )
    digest.update(b"\0json" if as_json else b"\0bytes")
    if body.upload is not None:
        digest.update(hashlib.sha256(body.upload).digest())
    return digest.digest()


def _headers(began: float, cid: str) -> dict[str, str]:
    return {
        "Cache-Control": NO_STORE,
        "X-Processing-Time": f"{_elapsed_ms(began)}ms",
    }


def _elapsed_ms(began: float) -> int:
    return round((time.perf_counter() - began) * 1000)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
