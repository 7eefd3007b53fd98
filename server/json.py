"""JSON responses (orjson) and the error body of SPEC §4."""

from __future__ import annotations

from typing import Any

import orjson
from starlette.responses import Response

from server.errors import ImgcdnError

NO_STORE = "no-store"


def json_response(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(
        orjson.dumps(data), status_code=status, media_type="application/json", headers=headers
    )


def error_response(error: ImgcdnError) -> Response:
    body: dict[str, Any] = {"code": error.code, "message": error.message}
    if error.param is not None:
        body["param"] = error.param
    headers = {"Cache-Control": NO_STORE, **error.headers}
    if error.retry_after is not None:
        headers["Retry-After"] = str(error.retry_after)
    return json_response({"error": body}, status=error.status, headers=headers)
