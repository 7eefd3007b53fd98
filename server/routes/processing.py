"""POST /v1/image/{op}, /v1/image/process, /v1/image/metadata (SPEC §6, seed 002).

Each request: read the body (JSON or multipart), authenticate (scope, rate limit, quota),
validate every field before any work, then run under its idempotency key. Params of a
`process` step are named `ops[i].params.x` in errors, with code `invalid_op`.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Callable, Coroutine
from dataclasses import replace
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response

from server import auth, idempotency, inputs, process, results
from server.errors import BadRequest, InvalidOp, InvalidParam, NotAvailable
from server.imagerefs import REF, Ref
from server.json import NO_STORE, json_response
from server.ops import MAX_STEPS, OPS, STEP, STEP_PARAMS, check_step
from server.plan import Plan, compile_ops
from server.routes.admin import public_base
from server.routes.bodies import Body, read_request
from server.runtime import Runtime
from server.schema import Array, Choice, Field, Obj, Text
from server.vision import moderation

Endpoint = Callable[[Request], Coroutine[Any, Any, Response]]
CREDENTIALS = frozenset({"api_key", "appkey"})
FORM_JSON = ("ops", "output")  # in a multipart form, these fields are JSON text
RETURN = Choice(("url", "base64", "binary"), "url (default): a signed image_url; or the bytes")
COMMON: dict[str, Field] = {
    "image": REF,
    "input": REF,
    "output": Obj({"return": RETURN}, title="Output"),
    "return": RETURN,
    "idempotency_key": Text(255, "replays the first answer for 24 h", r"[\x21-\x7e]+", "printable"),
}


def op_body(name: str) -> Obj:
    params = STEP_PARAMS[name]
    return Obj(
        {**params.fields, **COMMON},
        params.required,
        OPS[name].summary,
        title=f"{name}_request",
        ignored=CREDENTIALS,
    )


PROCESS_BODY = Obj(
    {
        **COMMON,
        "ops": Array(STEP, MAX_STEPS, "steps, run in this order"),
        "width": STEP_PARAMS["resize"].fields["width"],
        "height": STEP_PARAMS["resize"].fields["height"],
        "format": STEP_PARAMS["convert"].fields["format"],
        "quality": STEP_PARAMS["convert"].fields["quality"],
    },
    description="Run ops in order; encode once at the end",
    title="process_request",
    ignored=CREDENTIALS,
)
METADATA_BODY = Obj(
    {"image": REF, "input": REF, "idempotency_key": COMMON["idempotency_key"]},
    description="Size, format and EXIF of an image",
    title="metadata_request",
    ignored=CREDENTIALS,
)
MODERATE_BODY = replace(METADATA_BODY, description="An image to score", title="moderate_request")
BODIES: dict[str, Obj] = {
    **{name: op_body(name) for name in OPS},
    "process": PROCESS_BODY,
    "metadata": METADATA_BODY,
    "moderate": MODERATE_BODY,
}


def op_endpoint(name: str) -> Endpoint:
    async def endpoint(request: Request) -> Response:
        rt, body, caller = await _begin(request, "image.process")
        fields = BODIES[name].check(body.fields, "", body.text)
        ref = _image(fields, body)
        own = {k: v for k, v in fields.items() if k in STEP_PARAMS[name].fields}
        plan = compile_ops([(name, own)], rt.limits, [""])
        return await _run(request, rt, caller, name, body, fields, ref, plan)

    endpoint.__name__ = name
    endpoint.__doc__ = OPS[name].summary
    return endpoint


async def process_endpoint(request: Request) -> Response:
    """Run ops in order; encode once at the end."""
    rt, body, caller = await _begin(request, "image.process")
    try:
        fields = PROCESS_BODY.check(body.fields, "", body.text)
        ops = fields.get("ops")
        steps = [check_step(raw, i) for i, raw in enumerate(ops or [])]
        plan = _process_plan(rt, fields, steps)
    except InvalidParam as exc:
        if exc.param is not None and exc.param.startswith("ops"):
            raise InvalidOp(exc.param, exc.message) from None
        raise
    ref = _image(fields, body)
    return await _run(request, rt, caller, "process", body, fields, ref, plan)


def _process_plan(
    rt: Runtime, fields: dict[str, Any], steps: list[tuple[str, dict[str, Any]]]
) -> Plan:
    sized = [k for k in ("width", "height") if k in fields]
    if "ops" in fields and sized:
        raise InvalidParam(sized[0], f"{sized[0]} with ops: put the size in a resize step")
    if sized:  # seed 002's table form: input + width/height, no ops
        steps = [("resize", {k: fields[k] for k in sized})]
    paths = (
        [f"ops[{i}].params" for i in range(len(steps))] if "ops" in fields else [""] * len(steps)
    )
    # The request's own format and quality have the last word, after every step's.
    final: dict[str, Any] = {k: fields[k] for k in ("format", "quality") if k in fields}
    if final:
        steps, paths = [*steps, ("convert", final)], [*paths, ""]
    return compile_ops(steps, rt.limits, paths)


async def metadata_endpoint(request: Request) -> Response:
    """Size, format and EXIF of an image."""

    async def work(rt: Runtime, ref: Ref, caller: auth.Caller, fields: Fields) -> Answer:
        return await process.metadata(rt, ref, caller.prefix)

    return await _json_endpoint(request, "image.metadata", "metadata", METADATA_BODY, work)


async def moderate_endpoint(request: Request) -> Response:
    """P(NSFW) of an image: {flagged, categories: {nsfw: score}} (SPEC §9)."""

    async def work(rt: Runtime, ref: Ref, caller: auth.Caller, fields: Fields) -> Answer:
        data = await inputs.load(rt, ref, caller.prefix)
        limits, options = rt.source_limits, rt.render_options
        return await rt.pool.run(lambda cancel: moderation.moderate(data, limits, options, cancel))

    return await _json_endpoint(request, "image.process", "moderate", MODERATE_BODY, work)


Fields = dict[str, Any]
Answer = dict[str, Any]
Work = Callable[[Runtime, Ref, auth.Caller, Fields], Coroutine[Any, Any, Answer]]


async def _json_endpoint(
    request: Request, scope: str, name: str, schema: Obj, work: Work
) -> Response:
    """An endpoint that reads one image and answers JSON (metadata, moderate, ocr), under
    its idempotency key."""
    rt, body, caller = await _begin(request, scope)
    fields = schema.check(body.fields, "", body.text)
    ref = _image(fields, body)

    async def run() -> Response:
        answer = await work(rt, ref, caller, fields)
        return json_response(answer, headers={"Cache-Control": NO_STORE})

    fingerprint = _fingerprint(name, fields, body)
    return await idempotency.idempotent(
        request, caller, name, fields.get("idempotency_key"), fingerprint, run
    )


WHY_NOT = {"tag": moderation.NOT_SHIPPED}


async def not_available(request: Request) -> Response:
    """Endpoints of later issues (tag: §9)."""
    name = request.url.path.rsplit("/", 1)[-1]
    why = WHY_NOT.get(name, "it is not available in this version of imgcdn")
    raise NotAvailable(f"{request.url.path}: {why}", param=None)


async def _begin(request: Request, scope: str) -> tuple[Runtime, Body, auth.Caller]:
    rt: Runtime = request.app.state.runtime
    body = await read_request(request, rt.settings.max_source_bytes)
    if body.text:  # a form carries its structured fields as JSON text
        for name in FORM_JSON:
            if isinstance(body.fields.get(name), str):
                body.fields[name] = _json_field(body.fields[name], name)
    caller = await auth.authenticate(request, scope, body.fields)
    return rt, body, caller


def _image(fields: dict[str, Any], body: Body) -> Ref:
    given = [k for k in ("image", "input") if k in fields]
    if body.upload is not None:
        if given:
            raise BadRequest(
                f"the image is both uploaded and given as {given[0]}: send one", param=given[0]
            )
        return Ref("bytes", body.upload, body.upload_field)
    if len(given) == 2:
        raise InvalidParam("input", "give the image as image or as input, not both")
    if not given:
        raise InvalidParam("image", "image is required: {url}, {base64}, {id}, or a string")
    ref: Ref = fields[given[0]]
    return ref


def _json_field(raw: str, name: str) -> Any:
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise InvalidParam(name, f"{name} must be JSON text in a form field: {exc}") from None


def _mode(request: Request, fields: dict[str, Any]) -> str:
    chosen = fields.get("output", {}).get("return") or fields.get("return")
    if chosen:
        return str(chosen)
    query = request.query_params.get("return")
    if query is not None:
        return str(RETURN.check(query, "return"))
    accept = request.headers.get("accept", "")
    if "image/" in accept and "application/json" not in accept:
        return "binary"
    return "url"


def _fingerprint(endpoint: str, fields: dict[str, Any], body: Body) -> bytes:
    """What makes two requests the same request: the fields as sent (credentials and the
    idempotency key aside) and the uploaded bytes."""
    kept = {k: v for k, v in body.fields.items() if k not in CREDENTIALS | {"idempotency_key"}}
    digest = hashlib.sha256(endpoint.encode() + b"\0")
    digest.update(orjson.dumps(kept, option=orjson.OPT_SORT_KEYS, default=repr))
    if body.upload is not None:
        digest.update(hashlib.sha256(body.upload).digest())
    return digest.digest()


async def _run(
    request: Request,
    rt: Runtime,
    caller: auth.Caller,
    endpoint: str,
    body: Body,
    fields: dict[str, Any],
    ref: Ref,
    plan: Plan,
) -> Response:
    mode = _mode(request, fields)
    base = public_base(request)

    async def run() -> Response:
        outcome = await process.run(rt, ref, plan, caller.prefix, with_bytes=mode != "url")
        return await _answer(rt, outcome, mode, base)

    field_key = fields.get("idempotency_key")
    # Without a key the fingerprint is not read: skip hashing the input (1-2 ms a request).
    keyed = field_key is not None or "idempotency-key" in request.headers
    fingerprint = _fingerprint(endpoint, fields, body) if keyed else b""
    return await idempotency.idempotent(request, caller, endpoint, field_key, fingerprint, run)


async def _answer(rt: Runtime, outcome: process.Outcome, mode: str, base: str) -> Response:
    result = outcome.result
    headers = {"Cache-Control": NO_STORE, "X-Cache": "hit-result" if outcome.reused else "miss"}
    if mode == "url":
        return json_response(results.described(rt, base, result), headers=headers)
    data = outcome.body
    assert data is not None  # process.run reads it for every mode but url
    if mode == "base64":
        return json_response(
            {
                "base64": base64.b64encode(data).decode(),
                "mime": result.mime,
                "width": result.width,
                "height": result.height,
                "bytes": result.bytes,
                "format": result.fmt,
            },
            headers=headers,
        )
    headers.update({"X-Image-Width": str(result.width), "X-Image-Height": str(result.height)})
    return Response(data, media_type=result.mime, headers=headers)


OCR_BODY = Obj(
    {
        "image": REF,
        "input": REF,
        "language": Text(
            64,
            "Tesseract language data to read with, e.g. eng or eng+deu (default eng)",
            r"[a-z][a-z_]{1,30}(\+[a-z][a-z_]{1,30})*",
            "names like eng or eng+deu",
        ),
        "engine": Choice(
            ("auto", "tesseract", "rapidocr"),
            "tesseract for pages, rapidocr for photos and signs; auto (default) picks by "
            "the image and the language (docs/vision.md#ocr-and-documents)",
        ),
        "idempotency_key": COMMON["idempotency_key"],
    },
    description="Text of an image: lines with boxes and confidences, in reading order",
    title="ocr_request",
    ignored=CREDENTIALS,
)


async def ocr_endpoint(request: Request) -> Response:
    """Text of an image (SPEC §9): {text, lines: [{text, confidence, box}], language}."""
    # Imported on first use: numpy (and its 10 MB) stays out of workers that never read text.
    from server.vision import ocr

    async def work(rt: Runtime, ref: Ref, caller: auth.Caller, fields: Fields) -> Answer:
        language = str(fields.get("language", "eng"))
        return await ocr.ocr(rt, ref, caller.prefix, language, str(fields.get("engine", "auto")))

    # OCR is processing an image: the processing scope.
    return await _json_endpoint(request, "image.process", "ocr", OCR_BODY, work)
