"""The only wiring: routes, lifespan, the request middleware, and the one error handler."""

from __future__ import annotations

import contextlib
import logging
import os
import re
import time
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import orjson
from starlette.applications import Starlette
from starlette.convertors import Convertor, register_url_convertor
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Match, Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from server import metrics, results_sweep, schema, webhooks
from server.auth import rate_limit_headers
from server.errors import ImgcdnError, MethodNotAllowed, NotFound
from server.imaging import vips
from server.json import error_response
from server.ops import OPS
from server.routes import (
    assets,
    batch,
    compression,
    correction,
    cropping,
    delivery,
    health,
    image_assets,
    image_urls,
    imageprocessing,
    keys,
    processing,
    results,
    templates,
    urls,
)
from server.routes.docs import docs_routes
from server.routes.metrics import get_metrics
from server.routes.playground import playground_routes
from server.runtime import Runtime
from server.settings import Settings

log = logging.getLogger("imgcdn")
access_log = logging.getLogger("imgcdn.access")
_CORRELATION_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")
_METHOD_ORDER = {m: i for i, m in enumerate(("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"))}


class AnyPath(Convertor[str]):
    """Starlette's `path` stops at a newline (`.*`); ids must reach validate_id whole, so a
    newline is refused as an invalid id rather than routed around."""

    regex = "(?s:.*)"

    def convert(self, value: str) -> str:
        return value

    def to_string(self, value: str) -> str:
        return value


register_url_convertor("anypath", AnyPath())


def create_app(settings: Settings) -> Starlette:
    vips.configure()

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with contextlib.AsyncExitStack() as stack:
            app.state.runtime = rt = await Runtime.start(settings, stack)
            results_sweep.start(rt, stack)
            await webhooks.ensure_secret(rt)
            # Last on the stack, so stopped first: running items finish on a live pool.
            await rt.engine.start(rt, stack)
            yield

    routes = [
        Route("/t/{template}/{id:anypath}", delivery.deliver, methods=["GET", "HEAD"]),
        # After it: only a /t/ URL with no (or an empty) template segment gets here.
        Route("/t/{rest:anypath}", delivery.missing_template, methods=["GET", "HEAD"]),
        Route("/r/{name}", results.get_result, methods=["GET", "HEAD"]),
        Route("/v1/assets", assets.post_asset, methods=["POST"]),
        Route("/v1/assets", assets.list_assets, methods=["GET", "HEAD"]),
        # Before the plain asset routes: an id never ends in /original here.
        Route("/v1/assets/{id:anypath}/original", assets.get_original, methods=["GET", "HEAD"]),
        Route("/v1/assets/{id:anypath}", assets.put_asset, methods=["PUT"]),
        Route("/v1/assets/{id:anypath}", assets.get_asset, methods=["GET", "HEAD"]),
        Route("/v1/assets/{id:anypath}", assets.delete_asset, methods=["DELETE"]),
        Route("/v1/templates", templates.list_templates, methods=["GET", "HEAD"]),
        Route("/v1/templates/{name}", templates.put_template, methods=["PUT"]),
        Route("/v1/templates/{name}", templates.get_template, methods=["GET", "HEAD"]),
        Route("/v1/templates/{name}", templates.delete_template, methods=["DELETE"]),
        Route("/v1/urls", urls.post_urls, methods=["POST"]),
        Route("/v1/keys", keys.create_key, methods=["POST"]),
        Route("/v1/keys", keys.list_keys, methods=["GET", "HEAD"]),
        Route("/v1/keys/{id}", keys.get_key, methods=["GET", "HEAD"]),
        Route("/v1/keys/{id}", keys.patch_key, methods=["PATCH"]),
        Route("/v1/keys/{id}", keys.delete_key, methods=["DELETE"]),
        Route("/v1/purge", urls.post_purge, methods=["POST"]),
        *image_asset_routes(),
        *processing_routes(),
        Route("/api/tasks/visual/correction", correction.create, methods=["POST"]),
        Route("/api/tasks/visual/correction/{task_id}", correction.query, methods=["GET"]),
        Route("/api/v1/compress", compression.compress, methods=["POST"]),
        Route("/api/image/editing/image-cropping", cropping.crop, methods=["POST"]),
        Route("/image-processing", imageprocessing.pipeline, methods=["POST"]),
        Route("/api/v1/image-processing/{operation}", imageprocessing.single, methods=["POST"]),
        *docs_routes(),  # /v1/openapi.json and /docs: public, they describe, they do not act
        *playground_routes(),  # /playground: public files; its calls need the pasted key
        Route("/healthz", health.healthz, methods=["GET", "HEAD"]),
        Route("/readyz", health.readyz, methods=["GET", "HEAD"]),
        # For the scraper on the internal network: the nginx public block does not route it.
        Route("/metrics", get_metrics, methods=["GET", "HEAD"]),
    ]
    app = Starlette(
        routes=routes,
        lifespan=lifespan,
        exception_handlers={HTTPException: _http_exception},
    )
    # An image origin never redirects on its own: starlette's redirect would build Location
    # from the Host header, and a cache in front could keep it. A JSON 404 says what is wrong.
    app.router.redirect_slashes = False
    # idempotency.py keeps a 4xx for replay as this path answers it (a drop-in's envelope).
    app.state.error_answer = _error_answer
    app.add_middleware(RequestMiddleware)
    return app


def processing_routes() -> list[BaseRoute]:
    """SPEC §6: one endpoint per op, process and metadata; the later issues' endpoints
    answer 501 until they land (not 404: the path is right, the feature is not here)."""
    prefix = "/v1/image"
    routes: list[BaseRoute] = [
        Route(f"{prefix}/process", processing.process_endpoint, methods=["POST"]),
        Route(f"{prefix}/metadata", processing.metadata_endpoint, methods=["POST"]),
    ]
    routes += [
        Route(f"{prefix}/{name}", processing.op_endpoint(name), methods=["POST"]) for name in OPS
    ]
    routes += [
        Route(f"{prefix}/batch/submit", batch.submit, methods=["POST"]),
        Route(f"{prefix}/batch/status/{{id}}", batch.status, methods=["GET", "HEAD"]),
        Route(f"{prefix}/batch/cancel/{{id}}", batch.cancel, methods=["POST"]),
    ]
    routes.append(Route(f"{prefix}/moderate", processing.moderate_endpoint, methods=["POST"]))
    routes.append(Route(f"{prefix}/ocr", processing.ocr_endpoint, methods=["POST"]))
    later = ["tag"]
    routes += [
        Route(f"{prefix}/{path}", processing.not_available, methods=["GET", "POST"])
        for path in later
    ]
    return routes


def image_asset_routes() -> list[BaseRoute]:
    """SPEC §6 "Assets and URLs" under seed 002's paths. Before processing_routes(): none of
    these paths is an op name today, and listing them first keeps it so if one ever is."""
    prefix = "/v1/image"
    return [
        Route(f"{prefix}/upload", image_assets.upload, methods=["POST"]),
        Route(f"{prefix}/get/{{id:anypath}}", image_assets.get_image, methods=["GET", "HEAD"]),
        Route(f"{prefix}/list", image_assets.list_images, methods=["GET", "HEAD"]),
        Route(f"{prefix}/delete/{{id:anypath}}", image_assets.delete_image, methods=["DELETE"]),
        Route(f"{prefix}/deliver_url", image_urls.deliver_url, methods=["POST"]),
        Route(f"{prefix}/signed_url", image_urls.signed_url, methods=["POST"]),
        Route(
            f"{prefix}/transformation/create",
            image_urls.create_transformation,
            methods=["POST"],
        ),
        Route(
            f"{prefix}/transformation/list",
            image_urls.list_transformations,
            methods=["GET", "HEAD"],
        ),
    ]


def create_app_from_env() -> Starlette:
    """The factory `imgcdn serve --workers N` hands uvicorn: each worker reads the same env."""
    config = os.environ.get("IMGCDN_CONFIG")
    settings = Settings.load(os.environ, Path(config) if config else None)
    configure_logging(settings.log_level)
    return create_app(settings)


async def _http_exception(request: Request, exc: Exception) -> Response:
    # Starlette's own 404/405 for URLs no route matches: answer in our JSON shape.
    status = getattr(exc, "status_code", 500)
    if status == 405:
        allow = ", ".join(_methods_for(request.app.routes, request.scope))
        error: ImgcdnError = MethodNotAllowed(f"{request.method} is not allowed here", allow)
    elif status == 404:
        error = NotFound(_no_route_message(request.app.routes, request.scope))
    else:
        error = ImgcdnError(str(getattr(exc, "detail", "error")))
    return _error_answer(request.url.path, error, str(request.scope["state"]["correlation_id"]))


# Under a drop-in's path every error is in its seed's envelope, the router's 404 and 405
# and an unexpected 500 included: the seed's clients read every answer there in that shape.
# Each envelope gets the request's correlation id (seed 004 answers it as request_id).
Envelope = Callable[[ImgcdnError, str], Response]
DROP_INS: tuple[tuple[str, Envelope], ...] = (
    (correction.PATH, lambda error, _: correction.error_envelope(error)),
    ("/image-processing", imageprocessing.error_envelope),
    ("/api/v1/image-processing", imageprocessing.error_envelope),
    (compression.PATH, lambda error, _: compression.error_envelope(error)),
    (cropping.PATH, cropping.error_envelope),
)


def _error_answer(path: str, error: ImgcdnError, correlation_id: str) -> Response:
    """imgcdn's error shape, or the envelope of the drop-in whose path this is."""
    for prefix, envelope in DROP_INS:
        if path == prefix or path.startswith(prefix + "/"):
            return envelope(error, correlation_id)
    return error_response(error)


def _methods_for(routes: list[BaseRoute], scope: Scope) -> list[str]:
    """Every method some route takes on this path. Starlette's 405 names only the first
    matching route's, and several routes share a path (one per method group)."""
    methods: set[str] = set()
    for route in routes:
        if isinstance(route, Route) and route.matches(scope)[0] is not Match.NONE:
            methods |= route.methods or set()
    return sorted(methods, key=lambda m: (_METHOD_ORDER.get(m, len(_METHOD_ORDER)), m))


def _no_route_message(routes: list[BaseRoute], scope: Scope) -> str:
    path: str = scope["path"]
    message = f"no route for {path!r}"
    bare = path.rstrip("/")
    if bare and bare != path:
        # In the body, never in a Location header: the client decides whether to follow.
        bare_scope = {**scope, "path": bare}
        if any(route.matches(bare_scope)[0] is not Match.NONE for route in routes):
            message += f": paths take no trailing slash, did you mean {bare!r}?"
    return message


class RequestMiddleware:
    """Correlation id, timing, the error handler, one JSON log line and the request
    metrics (by route template, never the raw path) per request."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        correlation_id = _correlation_id(scope)
        # For answers that carry it in their body too (seed 004's request_id).
        scope.setdefault("state", {})["correlation_id"] = correlation_id
        runtime = getattr(scope["app"].state, "runtime", None) if "app" in scope else None
        if runtime is not None:
            schema.CAPS.set({"output_side": runtime.limits.max_side})
        sent: dict[str, object] = {"status": 0, "bytes": 0, "cache": None}
        body = {"in": 0, "out": 0}  # counted, not declared: a chunked body declares none
        head = scope["method"] == "HEAD"  # the app sends a body; the server drops it

        async def receive_counted() -> Message:
            message = await receive()
            if message["type"] == "http.request":
                body["in"] += len(message.get("body", b""))
            return message

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                headers.append((b"x-correlation-id", correlation_id.encode()))
                headers += rate_limit_headers(scope)  # a keyed request's, errors too
                message["headers"] = headers
                sent["status"] = message["status"]
                for name, value in headers:
                    if name.lower() == b"x-cache":
                        sent["cache"] = value.decode()
                    elif name.lower() == b"content-length":
                        sent["bytes"] = int(value)
            elif message["type"] == "http.response.body" and not head:
                body["out"] += len(message.get("body", b""))
            await send(message)

        try:
            await self.app(scope, receive_counted, send_with_id)
        except Exception as exc:  # the one place every failure becomes JSON
            error = exc if isinstance(exc, ImgcdnError) else ImgcdnError()
            if error.report:
                log.error("request failed: %s %s", scope["method"], scope["path"], exc_info=exc)
            elif error.status in (503, 504):  # a dependency down or slow: its name, no traceback
                log.warning("request failed: %s %s: %s", scope["method"], scope["path"], error)
            if sent["status"]:
                return  # the response had started: nothing more can be said on this stream
            await _error_answer(scope["path"], error, correlation_id)(scope, receive, send_with_id)
        finally:
            elapsed = time.perf_counter() - started
            # The router left the matched route in the scope; none matched: "unmatched".
            route = metrics.route_label(getattr(scope.get("route"), "path", None))
            metrics.request_observed(route, str(sent["status"]), elapsed, body["in"], body["out"])
            access_log.info(
                orjson.dumps(
                    {
                        "method": scope["method"],
                        "path": scope["path"],
                        "status": sent["status"],
                        "ms": round(elapsed * 1000, 1),
                        "cache": sent["cache"],
                        "bytes": sent["bytes"],
                        "correlation_id": correlation_id,
                    }
                ).decode()
            )


def _correlation_id(scope: Scope) -> str:
    """The caller's X-Correlation-ID, else X-Request-ID (a proxy's), else a new one."""
    found: dict[bytes, str] = {}
    for name, value in scope["headers"]:
        if name in (b"x-correlation-id", b"x-request-id"):
            found.setdefault(name, bytes(value).decode("latin-1"))
    for name in (b"x-correlation-id", b"x-request-id"):
        candidate = found.get(name)
        if candidate is not None and _CORRELATION_ID.fullmatch(candidate):
            return candidate
    return uuid.uuid4().hex


class JsonLines(logging.Formatter):
    """Each record as one JSON object on one line, uvicorn's and libvips' included: the log
    is read one record a line, so a plain line or a traceback's many would break it."""

    def format(self, record: logging.LogRecord) -> str:
        if record.name == access_log.name:
            return record.getMessage()  # the request line is one JSON object already
        entry = {"level": record.levelname.lower(), "logger": record.name}
        entry["message"] = record.getMessage()
        if record.exc_info:
            entry["traceback"] = self.formatException(record.exc_info)
        return orjson.dumps(entry).decode()


def configure_logging(level: str) -> None:
    """Every log record on stderr as a JSON line, at `level` and above. Idempotent."""
    handler = logging.StreamHandler()
    handler.setFormatter(JsonLines())
    logging.basicConfig(level=level.upper(), handlers=[handler], force=True)
    logging.captureWarnings(True)  # a Python warning is a JSON line too, not raw stderr
    # libvips warns about the image a request sent ("error in tile 0 x 8" for a truncated
    # JPEG) when that request's own answer (422) already says it; its INFO lines are tuning
    # notes ("reducev: using vector path"). Its warnings are for debugging only.
    pyvips_level = logging.WARNING if level.lower() == "debug" else logging.ERROR
    logging.getLogger("pyvips").setLevel(pyvips_level)
