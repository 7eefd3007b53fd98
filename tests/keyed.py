"""A seam for the auth and idempotency tests: the real app plus two probe routes that call
`authenticate` and `idempotent` as the processing routes do. `imgcdn serve` has no such
route; `python -m uvicorn keyed:create_app_from_env --factory --app-dir tests` serves this."""

from __future__ import annotations

import os
from typing import Any

import anyio
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from server import app as server_app
from server.auth import authenticate
from server.errors import InvalidParam
from server.idempotency import idempotent
from server.json import json_response
from server.settings import Settings

# What the idempotency probe's runs did, in this process (tests read it via /probe-runs).
RUNS: list[str] = []
GATES: dict[str, anyio.Event] = {}


def unlisted(request: Request) -> None:
    """Keep the probes out of the request metrics' route labels (as "unmatched"): they are
    not imgcdn's routes, and tests/test_metrics.py checks every label against those."""
    request.scope.pop("route", None)


async def probe(request: Request) -> Response:
    unlisted(request)
    fields: dict[str, Any] | None = None
    if request.method == "POST":
        fields = await request.json()
    caller = await authenticate(request, request.path_params["scope"], fields)
    return json_response({"key_id": caller.key_id, "prefix": caller.prefix, "pid": os.getpid()})


async def idem(request: Request) -> Response:
    """POST {"do": "ok" | "fail" | "bad" | "wait" | "big", "tag"?, ...} under idempotent();
    an answer's "run" counts the runs of its tag so far."""
    unlisted(request)
    body = await request.json()
    caller = await authenticate(request, "image.process", body)

    async def run() -> Response:
        tag = str(body.get("tag", ""))
        RUNS.append(tag)
        if body["do"] == "fail":
            raise RuntimeError("a bug in the run")
        if body["do"] == "bad":
            raise InvalidParam("width", "width must be 1..8192")
        if body["do"] == "wait":
            gate = GATES.setdefault(body["gate"], anyio.Event())
            await gate.wait()
        payload = "x" * 5000 if body["do"] == "big" else "done"
        return json_response({"result": payload, "run": RUNS.count(tag)}, status=201)

    fingerprint = repr(sorted((k, str(v)) for k, v in body.items() if k != "idempotency_key"))
    return await idempotent(
        request, caller, "idem", body.get("idempotency_key"), fingerprint.encode(), run
    )


async def open_gate(request: Request) -> Response:
    unlisted(request)
    GATES.setdefault(request.path_params["gate"], anyio.Event()).set()
    return json_response({"runs": RUNS})


async def runs(request: Request) -> Response:
    unlisted(request)
    return json_response({"runs": RUNS.count(request.path_params["tag"])})


def with_probes(app: Starlette) -> Starlette:
    app.router.routes.extend(
        [
            Route("/probe/{scope}", probe, methods=["GET", "POST"]),
            Route("/idem", idem, methods=["POST"]),
            Route("/gate/{gate}", open_gate, methods=["POST"]),
            Route("/runs/{tag}", runs, methods=["GET"]),
        ]
    )
    return app


def create_app(settings: Settings) -> Starlette:
    return with_probes(server_app.create_app(settings))


def create_app_from_env() -> Starlette:
    return with_probes(server_app.create_app_from_env())
