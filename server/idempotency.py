"""Idempotency keys (SPEC §6): the same key with the same request answers the first answer
again; with another request 422; while the first still runs 409 with Retry-After.

Records live in the shared state (server/state), per caller (key id, or "admin"), endpoint
and key, for 24 hours. What is kept and replayed: 2xx, 3xx and 4xx answers (a 400 stays a
400: the request it answers is the same), with their body up to IMGCDN_IDEMPOTENCY_MAX_BYTES
and the headers in KEPT_HEADERS. Released, so a retry runs again: 5xx answers, exceptions,
and the 4xx a retry can cure (408, 409, 425, 429). An answer over the size cap keeps its
fingerprint but not its body: the same request runs again (the processing API answers it
from the stored result), another request is still a 422.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Awaitable, Callable

from starlette.requests import Request
from starlette.responses import Response

from server.auth import Caller
from server.errors import (
    IdempotencyInProgress,
    IdempotencyKeyReused,
    ImgcdnError,
    InvalidParam,
    StateUnavailable,
)
from server.runtime import Runtime
from server.state.base import Stored

log = logging.getLogger("imgcdn")

KEEP_S = 24 * 3600.0
MAX_KEY_CHARS = 255
# Past the longest a request can run (fetch, queue and render), a mark left by a killed
# process stops blocking its key.
IN_FLIGHT_MARGIN_S = 30.0
KEPT_HEADERS = frozenset(
    {
        "content-type",
        "cache-control",
        "etag",
        "last-modified",
        "location",
        "content-disposition",
        # A binary answer's facts (the processing API, seeds 000 and 001): part of the answer.
        "x-image-width",
        "x-image-height",
        "x-processing-time",
    }
)
RETRYABLE_4XX = frozenset({408, 409, 425, 429})


async def idempotent(
    request: Request,
    caller: Caller,
    endpoint: str,
    field_key: str | None,
    fingerprint: bytes,
    run: Callable[[], Awaitable[Response]],
) -> Response:
    """`run()`'s answer, once per idempotency key (the Idempotency-Key header, else
    `field_key`); without a key, just `run()`. `fingerprint` is the request as the
    endpoint understood it (two requests are "the same" when their fingerprints are)."""
    key = _key(request.headers.get("idempotency-key"), field_key)
    if key is None:
        return await run()
    rt: Runtime = request.app.state.runtime
    s = rt.settings
    owner = caller.key_id or "admin"
    scope = hashlib.sha256(f"{owner}\0{endpoint}\0{key}".encode()).hexdigest()
    claim = await rt.state.claim(
        scope,
        hashlib.sha256(fingerprint).digest(),
        s.render_timeout_s + s.source_timeout_s + IN_FLIGHT_MARGIN_S,
    )
    if claim.outcome == "reused":
        raise IdempotencyKeyReused(
            "this idempotency key was used for a different request in the last 24 hours"
        )
    if claim.outcome == "in_progress":
        error = IdempotencyInProgress("the request with this idempotency key is still running")
        error.retry_after = claim.retry_after_s
        raise error
    if claim.outcome == "replay" and claim.stored is not None:
        return _replay(claim.stored)
    try:
        response = await run()
    except ImgcdnError as exc:
        if exc.status >= 500 or exc.status in RETRYABLE_4XX:
            await _release(rt, scope, claim.token)
            raise
        # Kept as the path answers it: a drop-in's envelope replays as its envelope.
        response = request.app.state.error_answer(
            request.url.path, exc, request.scope["state"]["correlation_id"]
        )
    except BaseException:
        await _release(rt, scope, claim.token)
        raise
    if response.status_code >= 500 or response.status_code in RETRYABLE_4XX:
        await _release(rt, scope, claim.token)
        return response
    body = getattr(response, "body", None)  # a streamed answer has none to keep
    kept = body if isinstance(body, bytes) and len(body) <= s.idempotency_max_bytes else None
    headers = tuple(
        (name, value) for name, value in response.headers.items() if name in KEPT_HEADERS
    )
    try:
        await rt.state.finish(
            scope, claim.token, Stored(response.status_code, headers, kept), KEEP_S
        )
    except StateUnavailable:
        # The work is done: answer it. The in-flight mark expires on its own.
        log.warning("idempotency: could not keep the answer for %s", endpoint)
    return response


def _key(header: str | None, field_key: str | None) -> str | None:
    for value in (header, field_key):
        if value is not None and not (
            1 <= len(value) <= MAX_KEY_CHARS and value.isascii() and value.isprintable()
        ):
            raise InvalidParam(
                "idempotency_key",
                f"idempotency_key must be 1..{MAX_KEY_CHARS} printable ASCII characters",
            )
    if header is not None and field_key is not None and header != field_key:
        raise InvalidParam(
            "idempotency_key", "the Idempotency-Key header and idempotency_key field differ"
        )
    return header if header is not None else field_key


def _replay(stored: Stored) -> Response:
    response = Response(stored.body, status_code=stored.status)
    response.headers.update(dict(stored.headers))
    response.headers["Idempotent-Replayed"] = "true"
    return response


async def _release(rt: Runtime, scope: str, token: str) -> None:
    try:
        await rt.state.release(scope, token)
    except StateUnavailable:
        log.warning("idempotency: could not release an in-flight mark; it expires on its own")
