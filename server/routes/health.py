"""Liveness and readiness: /healthz answers while the process runs, /readyz when storage does,
and Redis too when one is configured (IMGCDN_REDIS_URL).

Delivery (/t/, /r/) needs only storage, so a Redis outage must not take a replica out of a
load balancer that routes delivery: such a probe asks `/readyz?skip=redis` (k8s/ does).
"""

from __future__ import annotations

import asyncio

from starlette.requests import Request
from starlette.responses import Response

from server import redisconn
from server.errors import InvalidParam, StateUnavailable
from server.json import json_response
from server.runtime import Runtime

SKIPPABLE = frozenset({"redis"})


async def healthz(request: Request) -> Response:
    return json_response({"status": "ok"})


async def readyz(request: Request) -> Response:
    rt: Runtime = request.app.state.runtime
    skip = set(filter(None, request.query_params.get("skip", "").split(",")))
    if not skip <= SKIPPABLE:
        raise InvalidParam("skip", f"skip takes {', '.join(sorted(SKIPPABLE))}")
    await rt.storage.ping()  # StorageUnavailable becomes a 503 with Retry-After
    body: dict[str, object] = {
        "status": "ready",
        "renders_pending": rt.pool.pending,
        "queued": rt.pool.queued,
    }
    if rt.redis is not None and "redis" not in skip:
        try:
            # The client's own retry may take twice the timeout; a probe waits it once.
            async with asyncio.timeout(rt.settings.state_timeout_s):
                await redisconn.ping(rt.redis)  # StateUnavailable: a 503 with Retry-After
        except TimeoutError:
            raise StateUnavailable("redis did not answer in time") from None
        body["redis"] = "ready"
    return json_response(body)
