"""GET /v1/openapi.json (generated from the app's routes and the catalog) and GET /docs.

Both are public: they describe the API, they do not act, and a caller needs them before it
has a key. /docs is Swagger UI from the files the swagger-ui-py wheel installs, served from
here (an allow-list, never a directory), so the page works with the server offline; its
Content-Security-Policy lets it load nothing but this origin.
"""

from __future__ import annotations

import importlib.metadata
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from server.errors import NotFound
from server.openapi import document
from server.routes import imageprocessing_openapi
from server.routes.catalog import OPERATIONS, REFINED
from server.routes.static_files import STATIC_CACHE, Asset, asset, packaged, serve

# Every route under these is documented, and must be in the catalog (seed 003's too).
DOC_ROOTS = ("/v1/", "/api/tasks/visual/correction")
DELIVERY = "/t/{template}/{id:anypath}"
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; "
    "img-src 'self' data:; connect-src 'self'; font-src 'self'; base-uri 'none'; "
    "form-action 'none'; frame-ancestors 'none'"
)
HEADERS = {"Content-Security-Policy": CSP}


def documented_routes(routes: list[BaseRoute]) -> list[tuple[str, str]]:
    """(METHOD, route path) of every route the document describes. HEAD goes with GET."""
    found: list[tuple[str, str]] = []
    for route in routes:
        if isinstance(route, Route) and (
            route.path.startswith(DOC_ROOTS) or route.path == DELIVERY
        ):
            methods = sorted((route.methods or set()) - {"HEAD"})
            found += [(method, route.path) for method in methods]
    return found


def build(routes: list[BaseRoute]) -> dict[str, Any]:
    info = {
        "title": "imgcdn",
        "version": importlib.metadata.version("imgcdn"),
        "description": "Image delivery, admin and processing APIs. Generated from the "
        "definitions the server validates with; rendered at /docs.",
    }
    doc = document(documented_routes(routes), OPERATIONS, info, REFINED)
    doc["paths"].update(imageprocessing_openapi.openapi_paths())  # seed 000's drop-in (§10)
    return doc


async def openapi_json(request: Request) -> Response:
    state = request.app.state
    cached: Asset | None = getattr(state, "openapi", None)
    if cached is None:  # the routes are fixed once the app is built: generate once
        body = orjson.dumps(build(request.app.routes))  # compact: half the indented size
        cached = state.openapi = asset(body, "application/json")
    return serve(request, cached, "no-cache", HEADERS)


async def docs_page(request: Request) -> Response:
    return serve(request, _file("docs.html"), "no-cache", HEADERS)


async def docs_static(request: Request) -> Response:
    name = request.path_params["name"]
    if name not in STATIC:
        raise NotFound(f"no docs file {name!r}")
    return serve(request, _file(name), STATIC_CACHE, HEADERS)


def docs_routes() -> list[BaseRoute]:
    return [
        Route("/v1/openapi.json", openapi_json, methods=["GET", "HEAD"]),
        Route("/docs", docs_page, methods=["GET", "HEAD"]),
        Route("/docs/static/{name}", docs_static, methods=["GET", "HEAD"]),
    ]


# name -> (package holding it, media type). Only these are served.
STATIC = {
    "docs.html": ("server", "text/html; charset=utf-8"),
    "docs.js": ("server", "text/javascript; charset=utf-8"),
    "swagger-ui-bundle.js": ("swagger_ui", "text/javascript; charset=utf-8"),
    "swagger-ui.css": ("swagger_ui", "text/css; charset=utf-8"),
    "favicon-32x32.png": ("swagger_ui", "image/png"),
}


def _file(name: str) -> Asset:
    package, media_type = STATIC[name]
    return packaged(package, name, media_type)
