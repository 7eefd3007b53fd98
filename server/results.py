from __future__ import annotations

import time
from dataclasses import dataclass

from server.formats import MIME
from server.runtime import Runtime
from server.spec import Format

_MEM: dict[str, tuple[Result, bytes]] = {}


@dataclass(frozen=True, slots=True)
class Result:
    id: str
    fmt: Format
    mime: str
    width: int
    height: int
    bytes: int
    expires_at: int


async def lookup(rt: Runtime, result_id: str) -> Result | None:
    x = _MEM.get(result_id)
    return x[0] if x else None


async def read(rt: Runtime, result: Result) -> bytes:
    return _MEM[result.id][1]


async def save(
    rt: Runtime, result_id: str, fmt: Format, body: bytes, width: int, height: int
) -> Result:
    r = Result(result_id, fmt, MIME[fmt], width, height, len(body), int(time.time()) + 3600)
    _MEM[result_id] = (r, body)
    return r


async def renew(rt: Runtime, result: Result) -> Result:
    return result


def public_url(rt: Runtime, request_base: str, result: Result) -> str:
    return f"{request_base.rstrip('/')}/r/{result.id}.{result.fmt}"
