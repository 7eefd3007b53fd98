"""A webhook receiver for the tests: a real Starlette app served by uvicorn in a thread on
127.0.0.1 (conftest.serving_in_thread), recording every request it gets."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field

from conftest import serving_in_thread
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response, StreamingResponse
from starlette.routing import Route


@dataclass
class Receiver:
    """A webhook receiver: /hook answers the statuses in `plan` in turn, then 200."""

    base: str = ""
    plan: list[int] = field(default_factory=list)
    seen: list[tuple[str, dict[str, str], bytes]] = field(default_factory=list)
    release: threading.Event = field(default_factory=threading.Event)

    async def hook(self, request: Request) -> Response:
        await self.record(request)
        return Response(status_code=self.plan.pop(0) if self.plan else 200)

    async def hang(self, request: Request) -> Response:
        await self.record(request)
        await asyncio.to_thread(self.release.wait, 60)  # until the test ends
        return Response()

    async def hang_after_status(self, request: Request) -> Response:
        await self.record(request)

        async def body() -> AsyncIterator[bytes]:
            yield b"accepted"
            await asyncio.to_thread(self.release.wait, 60)

        return StreamingResponse(body(), status_code=202)

    async def redirect(self, request: Request) -> Response:
        await self.record(request)
        return RedirectResponse("/hook", status_code=302)

    async def record(self, request: Request) -> None:
        self.seen.append((request.url.path, dict(request.headers), await request.body()))

    def app(self) -> Starlette:
        routes = [
            Route("/hook", self.hook, methods=["POST"]),
            Route("/hang", self.hang, methods=["POST"]),
            Route("/hang-after-status", self.hang_after_status, methods=["POST"]),
            Route("/redirect", self.redirect, methods=["POST"]),
        ]
        return Starlette(routes=routes)


@contextlib.contextmanager
def receiving() -> Iterator[Receiver]:
    """A Receiver serving on a free port of 127.0.0.1 (its `base`) until the block ends."""
    r = Receiver()
    with serving_in_thread(r.app()) as base:
        r.base = base
        try:
            yield r
        finally:
            r.release.set()  # let hanging handlers end, so uvicorn can stop
