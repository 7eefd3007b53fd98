"""Liveness and readiness: /healthz answers while the process runs, /readyz when storage does."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from server.json import json_response
from server.runtime import Runtime


async def healthz(request: Request) -> Response:
    return json_response({"status": "ok"})


async def readyz(request: Request) -> Response:
    rt: Runtime = request.app.state.runtime
    await rt.storage.ping()  # StorageUnavailable becomes a 503 with Retry-After
    return json_response(
        {"status": "ready", "renders_pending": rt.pool.pending, "queued": rt.pool.queued}
    )
