from __future__ import annotations

from collections.abc import Awaitable, Callable

from starlette.requests import Request
from starlette.responses import Response

from server.auth import Caller


async def idempotent(
    request: Request,
    caller: Caller,
    endpoint: str,
    field_key: str | None,
    fingerprint: bytes,
    run: Callable[[], Awaitable[Response]],
) -> Response:
    return await run()
