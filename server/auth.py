from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from starlette.requests import Request

from server.routes.admin import authorize


@dataclass(frozen=True, slots=True)
class Caller:
    key_id: str | None
    prefix: str


async def authenticate(
    request: Request, scope: str, fields: Mapping[str, object] | None = None
) -> Caller:
    authorize(request)
    return Caller(None, "")
