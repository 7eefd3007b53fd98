"""Seed 003 drop-in: POST /api/tasks/visual/correction, GET .../{task_id} (SPEC §10).

The key is an imgcdn API key in X-API-KEY (auth.authenticate reads it there), with the
processing API's scope, rate limit and quota. Every answer, errors included, is the seed's
envelope {status, message, data}; an error's imgcdn code (and the field it names) are in
`data` (app.py answers the router's 404/405 under PATH in it too). A POST takes the
processing API's Idempotency-Key header (server/idempotency.py): the same key and request
answer the first answer again (an async one: the same task_id, no second task).
The image is stored as a processing result: its signed URL expires with IMGCDN_RESULT_TTL_S
(default 3600 s: the seed's "valid for 1 hour").
"""

from __future__ import annotations

import base64
import hashlib
import time
from typing import TYPE_CHECKING, Any

import orjson
from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import Response

from server import auth, idempotency, inputs, results
from server.errors import BadRequest, ImgcdnError, InvalidParam, TooLarge
from server.imagerefs import Ref
from server.imaging.inspect import probe
from server.imaging.vips import Cancel
from server.json import NO_STORE, json_response
from server.routes import correction_tasks as tasks
from server.routes.admin import (
    MULTIPART_OVERHEAD,
    is_json,
    media_type,
    parse_form,
    parse_json,
    public_base,
    read_body,
    unsupported_body,
)
from server.runtime import Runtime

if TYPE_CHECKING:
    from server.vision.correction import Corrected

PATH = "/api/tasks/visual/correction"
MAX_BYTES = 20 * 1024 * 1024  # the seed's file size limit
CHOICES = {"sync": (0, 1), "type": (0, 1, 2, 3, 4), "return_type": (1, 2, 3)}
DEFAULTS = {"sync": 0, "type": 1, "return_type": 1}  # the seed: type 1 is the default
KNOWN = {"image_url", "image_file", *CHOICES}
CREDENTIALS = {"api_key", "appkey"}


def envelope(status: int, message: str, data: dict[str, Any], headers: dict[str, str]) -> Response:
    body = {"status": status, "message": message, "data": data}
    return json_response(body, status=status, headers={"Cache-Control": NO_STORE, **headers})


def error_envelope(error: ImgcdnError) -> Response:
    data: dict[str, Any] = {"code": error.code, "message": error.message}
    if error.param is not None:
        data["param"] = error.param
    headers = dict(error.headers)
    if error.retry_after is not None:
        headers["Retry-After"] = str(error.retry_after)
    return envelope(error.status, error.message, data, headers)


async def query(request: Request) -> Response:
    """An async task's state, and its image once done."""
    rt: Runtime = request.app.state.runtime
    caller = await auth.authenticate(request, "image.process")
    task = await tasks.get(rt, request.path_params["task_id"], caller.key_id)
    data = await tasks.public(rt, task, public_base(request))
    # The seed: 200 is the request's success; a failed task says why in `message`.
    return envelope(200, task.error or "success", data, {})


async def create(request: Request) -> Response:
    """Create a visual correction task; sync=1 answers with its result."""
    rt: Runtime = request.app.state.runtime
    fields, upload = await _read(request, min(MAX_BYTES, rt.settings.max_source_bytes))
    caller = await auth.authenticate(request, "image.process", fields)
    options = _options(fields)
    ref = _source(fields, upload)
    if options["return_type"] == 3 and options["sync"] == 0:
        raise InvalidParam("return_type", "return_type 3 (binary) is only for sync=1")

    async def answer() -> Response:
        return await _answer(request, rt, caller, ref, options)

    keyed = "idempotency-key" in request.headers
    # Without a key the fingerprint is not read: skip hashing the input.
    fingerprint = _fingerprint(fields, upload) if keyed else b""
    return await idempotency.idempotent(request, caller, "correction", None, fingerprint, answer)


async def _answer(
    request: Request, rt: Runtime, caller: auth.Caller, ref: Ref, options: dict[str, int]
) -> Response:
    created = time.time()
    data = await inputs.load(rt, ref, caller.prefix, max_bytes=MAX_BYTES)
    if options["sync"] == 0:
        # Checked now: a non-image or one over 4096 x 4096 is the submitter's 4xx, as with
        # sync=1, not a task that fails later.
        await checked(rt, data, ref.path)
        task = await tasks.submit(rt, data, caller, options["type"], options["return_type"])
        return envelope(200, "success", {"task_id": task.id}, {})
    started = time.time()
    done = await run(rt, data, ref.path, options["type"])
    result = await save(rt, data, options["type"], done)
    if options["return_type"] == 3:
        return Response(done.body, media_type=result.mime, headers={"Cache-Control": NO_STORE})
    image = (
        results.public_url(rt, public_base(request), result)
        if options["return_type"] == 1
        else base64.b64encode(done.body).decode()
    )
    answer = tasks.finished(result.id, created, started, time.time(), image)
    return envelope(200, "success", answer, {})


def _fingerprint(fields: dict[str, Any], upload: bytes | None) -> bytes:
    """What makes two requests the same: the fields as sent (credentials aside) and the
    uploaded bytes."""
    kept = {k: v for k, v in fields.items() if k not in CREDENTIALS}
    digest = hashlib.sha256(b"correction\0")
    digest.update(orjson.dumps(kept, option=orjson.OPT_SORT_KEYS, default=repr))
    if upload is not None:
        digest.update(hashlib.sha256(upload).digest())
    return digest.digest()


async def run(rt: Runtime, data: bytes, field: str, kind: int) -> Corrected:
    """Task `kind` on `data` in the render pool, the seed's limits checked before decoding."""
    if len(data) > MAX_BYTES:
        raise TooLarge(f"{field} is {len(data)} bytes, the limit is {MAX_BYTES}", field)
    limits, options = rt.source_limits, rt.render_options
    # Imported on first use: OpenCV and numpy stay out of workers that only deliver.
    from server.vision.correction import check_limits, correct

    def job(cancel: Cancel) -> Corrected:
        info = probe(data, limits)
        check_limits(info, field)
        return correct(data, info, kind, options, cancel)

    return await rt.pool.run(job)


async def checked(rt: Runtime, data: bytes, field: str) -> None:
    """The seed's limits and a known image format, from the header only (no decode)."""
    limits = rt.source_limits
    from server.vision.correction import check_limits

    await rt.pool.run(lambda cancel: check_limits(probe(data, limits), field))


async def save(rt: Runtime, data: bytes, kind: int, done: Corrected) -> results.Result:
    digest = hashlib.sha256(b"imgcdn-seed003-1\0" + bytes([kind]) + data).digest()
    rid = base64.urlsafe_b64encode(digest[:24]).decode()
    return await results.save(rt, rid, done.fmt, done.body, done.width, done.height)


async def _read(request: Request, max_bytes: int) -> tuple[dict[str, Any], bytes | None]:
    """The fields (multipart form or JSON) and the image_file bytes, if uploaded."""
    if media_type(request) == "multipart/form-data":
        raw = await read_body(request, max_bytes + MULTIPART_OVERHEAD, max_bytes)
        form = await parse_form(request, raw, max_bytes, max_files=1, max_fields=16, param="body")
        fields: dict[str, Any] = {}
        upload: bytes | None = None
        try:
            for name, value in form.multi_items():
                if isinstance(value, UploadFile):
                    if name != "image_file":
                        raise BadRequest(f"unexpected file field {name!r}: use image_file", name)
                    upload = await value.read()
                else:
                    fields[name] = value
        finally:
            await form.close()
        return fields, upload
    raw = await read_body(request, max_bytes * 4 // 3 + 4096)
    if not raw.strip():
        raise BadRequest("empty body: send multipart/form-data with image_file or image_url")
    if not is_json(request, raw):
        raise unsupported_body(request, "multipart/form-data or JSON")
    value = parse_json(raw)
    if not isinstance(value, dict):
        raise BadRequest("the body must be a JSON object", param="body")
    return value, None


def _options(fields: dict[str, Any]) -> dict[str, int]:
    unknown = sorted(set(fields) - KNOWN - CREDENTIALS)
    if unknown:
        raise InvalidParam(unknown[0], f"unknown field {unknown[0]}; takes {', '.join(KNOWN)}")
    chosen: dict[str, int] = {}
    for name, allowed in CHOICES.items():
        raw = fields.get(name, "")
        if raw in ("", None):
            chosen[name] = DEFAULTS[name]
            continue
        try:
            number = int(str(raw).strip())
        except ValueError:
            number = -1
        if number not in allowed or isinstance(raw, (bool, float)):
            values = ", ".join(map(str, allowed))
            raise InvalidParam(name, f"{name} must be one of {values}, not {str(raw)[:20]!r}")
        chosen[name] = number
    return chosen


def _source(fields: dict[str, Any], upload: bytes | None) -> Ref:
    url = fields.get("image_url")
    if upload is not None and url not in (None, ""):
        raise InvalidParam("image_url", "send image_url or image_file, not both")
    if upload is not None:
        if not upload:
            raise InvalidParam("image_file", "image_file is empty")
        return Ref("bytes", upload, "image_file")
    if "image_file" in fields:
        raise InvalidParam("image_file", "image_file must be a file part of a multipart form")
    if not isinstance(url, str) or not url:
        raise InvalidParam("image_file", "image_file or image_url is required")
    if not url.lower().startswith(("http://", "https://")):
        raise InvalidParam("image_url", "image_url must be an http(s) URL")
    return Ref("url", url, "image_url", plain=True)
