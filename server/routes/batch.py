"""POST /v1/image/batch/submit, GET /v1/image/batch/status/{id}, POST
/v1/image/batch/cancel/{id} (SPEC §8, seed 002). The checks and answers are
server/jobs/batch.py's; the work is the job engine's.

Each call is one request against the key's rate limit, with the scope `image.process` (a
batch is processing, run later); a submit spends one unit of the daily quota per item,
status and cancel one each. Submit and cancel take an
Idempotency-Key as the processing API does.
"""

from __future__ import annotations

import hashlib
from dataclasses import replace
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response

from server import auth, idempotency
from server.errors import BadRequest, JobNotFound
from server.jobs import batch
from server.json import NO_STORE, json_response
from server.routes.admin import is_json, parse_json, public_base, read_body, unsupported_body
from server.routes.bodies import read_request
from server.runtime import Runtime

SCOPE = "image.process"
CANCEL_MAX_BYTES = 64 * 1024


async def submit(request: Request) -> Response:
    """Submit a batch of images to process; answers 202 with the job's id."""
    rt: Runtime = request.app.state.runtime
    # The cap of a process request's body: the inline (base64) images of one batch share
    # one source's bytes; bigger batches name stored assets ({"id"}) or URLs.
    body = await read_request(request, rt.settings.max_source_bytes)
    # One request at the rate, one unit of the daily quota per item (as many requests to
    # /v1/image/process would spend); a count past the cap is refused by the checks below.
    items = body.fields.get("items")
    units = min(len(items), rt.settings.batch_max_items) if isinstance(items, list) else 1
    caller = await auth.authenticate(request, SCOPE, body.fields, units=max(1, units))
    batch.needs_json(body.text or body.upload is not None)
    new = batch.check_submit(rt, body.fields, caller.prefix, public_base(request))
    owner = batch.owner_of(caller.key_id)

    async def run() -> Response:
        job = await rt.engine.submit(replace(new, owner=owner))
        headers = {"Cache-Control": NO_STORE, "Location": f"/v1/image/batch/status/{job.id}"}
        return json_response(batch.ticket(job), status=202, headers=headers)

    return await idempotency.idempotent(
        request,
        caller,
        "batch.submit",
        body.fields.get("idempotency_key"),
        _fingerprint("batch.submit", body.fields),
        run,
    )


async def status(request: Request) -> Response:
    """Progress and per-item results of a batch job."""
    rt: Runtime = request.app.state.runtime
    caller = await auth.authenticate(request, SCOPE)
    job_id = batch.check_id(request.path_params["id"])
    job = await rt.jobs.get(job_id, batch.owner_of(caller.key_id))
    if job is None:
        raise JobNotFound(job_id)
    return json_response(batch.status_json(job), headers={"Cache-Control": NO_STORE})


async def cancel(request: Request) -> Response:
    """Cancel a batch job: pending items are dropped, running ones finish. Idempotent."""
    rt: Runtime = request.app.state.runtime
    fields = await _small_json(request)
    caller = await auth.authenticate(request, SCOPE, fields)
    checked = batch.check_cancel(request.path_params["id"], fields)  # the body first, then
    job_id = batch.check_id(request.path_params["id"])  # the id: a bad field is a 400

    async def run() -> Response:
        job = await rt.engine.cancel(job_id, batch.owner_of(caller.key_id))
        if job is None:
            raise JobNotFound(job_id)
        return json_response(
            {"id": job.id, "status": job.status}, headers={"Cache-Control": NO_STORE}
        )

    fingerprint = _fingerprint("batch.cancel", {"id": job_id})
    return await idempotency.idempotent(
        request, caller, "batch.cancel", checked.get("idempotency_key"), fingerprint, run
    )


def _fingerprint(endpoint: str, fields: dict[str, object]) -> bytes:
    kept = {k: v for k, v in fields.items() if k not in {"api_key", "appkey", "idempotency_key"}}
    digest = hashlib.sha256(endpoint.encode() + b"\0")
    digest.update(orjson.dumps(kept, option=orjson.OPT_SORT_KEYS, default=repr))
    return digest.digest()


async def _small_json(request: Request) -> dict[str, Any]:
    """Cancel's optional body ({"job_id"}): empty, or a small JSON object."""
    raw = await read_body(request, CANCEL_MAX_BYTES)
    if not raw.strip():
        return {}
    if not is_json(request, raw):
        raise unsupported_body(request, "JSON (or no body)")
    value = parse_json(raw)
    if not isinstance(value, dict):
        raise BadRequest("the body must be a JSON object", param="body")
    return value
