"""Where a cold `POST /v1/image/process` spends its CPU, piece by piece, in-process: the
real app and Runtime (local storage in a temp data dir), each piece of the request path
called on its own and timed in CPU ms (process time, so a piece's worker threads count),
then the whole request through the ASGI app in the same process. What the server costs
over HTTP beyond that whole is uvicorn's (reading a 2.5-3.4 MB body off the socket).

    python bench/process_cost.py [--rounds 30]    (one JSON line per body kind)

The job is the benchmark's: the 12 MP JPEG, resize to 800 px, JPEG q80; every round's body
is a distinct image (a counter in a COM segment, as bench/post.lua does).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import processing
from starlette.requests import Request

from server import inputs, results
from server.app import create_app
from server.auth import authenticate
from server.imaging.chain import render_chain
from server.imaging.inspect import probe
from server.imaging.vips import Cancel
from server.process import result_id
from server.routes import processing as route
from server.routes.bodies import read_request
from server.settings import Settings

TOKEN = "bench-admin-token-0123456789"  # noqa: S105  # a throwaway app of its own
CHUNK = 65536  # as uvicorn hands a body over: the socket's reads


def scope(app: Any, body: bytes, ctype: str) -> dict[str, Any]:
    headers = [
        (b"host", b"127.0.0.1"),
        (b"content-type", ctype.encode()),
        (b"content-length", str(len(body)).encode()),
        (b"authorization", f"Bearer {TOKEN}".encode()),
    ]
    return {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1",
            "method": "POST", "scheme": "http", "path": "/v1/image/process", "raw_path":
            b"/v1/image/process", "query_string": b"", "root_path": "", "headers": headers,
            "client": ("127.0.0.1", 1), "server": ("127.0.0.1", 80), "app": app,
            "state": {}}  # fmt: skip


def receiver(body: bytes) -> Callable[[], Awaitable[dict[str, Any]]]:
    chunks = [body[i : i + CHUNK] for i in range(0, len(body), CHUNK)]

    async def receive() -> dict[str, Any]:
        if chunks:
            chunk = chunks.pop(0)
            return {"type": "http.request", "body": chunk, "more_body": bool(chunks)}
        return {"type": "http.disconnect"}

    return receive


class Clock:
    """CPU ms per named piece, summed over rounds."""

    def __init__(self) -> None:
        self.ms: dict[str, list[float]] = {}

    async def time(self, name: str, piece: Awaitable[Any] | Callable[[], Any]) -> Any:
        started = time.process_time()
        value = await piece if isinstance(piece, Awaitable) else piece()
        self.ms.setdefault(name, []).append(1000 * (time.process_time() - started))
        return value


async def pieces(app: Any, clock: Clock, body: bytes, ctype: str) -> None:
    """One cold request's work, piece by piece, in the order the route does it."""
    rt = app.state.runtime
    request = Request(scope(app, body, ctype), receiver(body))
    got = await clock.time("parse body", read_request(request, rt.settings.max_source_bytes))
    await clock.time("authenticate", authenticate(request, "image.process", got.fields))

    def check() -> tuple[Any, Any, Any]:
        if got.text:
            got.fields["ops"] = json.loads(got.fields["ops"])
        fields = route.PROCESS_BODY.check(got.fields, "", got.text)  # decodes base64
        steps = [route.check_step(raw, i) for i, raw in enumerate(fields["ops"])]
        return fields, route._process_plan(rt, fields, steps), route._image(fields, got)

    fields, plan, ref = await clock.time("check fields (+ base64 decode)", check)
    fingerprint = lambda: route._fingerprint("process", fields, got)  # noqa: E731
    await clock.time("idempotency fingerprint (with a key)", fingerprint)
    source = await clock.time("sha256 of the input", inputs.identify(rt, ref, ""))
    rid = result_id(source.sha256, plan, {})
    await clock.time("result lookup (a miss)", results.lookup(rt, rid))
    data = await source.read()
    info = await clock.time("probe", lambda: probe(data, rt.source_limits))
    fmt = plan.fmt or "jpeg"
    out = await clock.time(
        "render (decode, resize, encode)",
        lambda: render_chain(data, info, plan, fmt, rt.render_options, Cancel(), {}),
    )
    await clock.time("store the result", results.save(rt, rid, fmt, out.body, 800, out.height))


async def whole(app: Any, clock: Clock, body: bytes, ctype: str) -> None:
    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await clock.time(
        "whole request through the ASGI app", app(scope(app, body, ctype), receiver(body), send)
    )
    status = sent[0]["status"]
    if status != 200:
        raise RuntimeError(f"in-process request: {status} {sent[1:]}")


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--rounds", type=int, default=30)
    a = ap.parse_args()
    data = Path(tempfile.mkdtemp(prefix="imgcdn-process-cost-"))
    app = create_app(Settings(data_dir=data, admin_tokens=(TOKEN,)))
    folder = processing.temp_folder()
    bodies = processing.cold_bodies(folder)
    serial = 0
    async with app.router.lifespan_context(app):
        for kind, (prefix, suffix, ctype) in bodies.items():
            clock = Clock()
            for round_ in range(a.rounds + 2):
                for step in (pieces, whole):
                    serial += 1
                    body = processing.sample_body(prefix, suffix, f"{serial:016d}")
                    await step(app, clock if round_ >= 2 else Clock(), body, ctype)  # 2 warm-ups
            ms = {k: round(statistics.median(v), 2) for k, v in clock.ms.items()}
            print(json.dumps({"kind": kind, "rounds": a.rounds, "bytes": len(body), "cpu_ms": ms}))


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
