"""GET /playground: a page to try delivery parameters on a stored or uploaded image.

The page and its two static files carry no data, so they are served without a key, like
/docs. Everything the page shows comes from the APIs it calls with a key the user pastes
into it (an admin token or an API key), kept in sessionStorage and sent as
`Authorization: Bearer`: never a cookie or HTTP Basic, whose ambient credentials would let
another site's form act as the user on the admin API (CSRF). docs/playground.md says more.

The Content-Security-Policy allows scripts and styles from this origin only (no inline
code), images from this origin, the blob: URLs the page makes of what it fetched and data:
(its empty favicon, so the browser asks for no /favicon.ico), and no framing (clickjacking
a page that holds a key).
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from server.errors import NotFound
from server.routes.static_files import STATIC_CACHE, Asset, packaged, serve

CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' blob: data:; "
    "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Frame-Options": "DENY",  # frame-ancestors' older spelling, for older browsers
    "Referrer-Policy": "no-referrer",
}
# name -> media type. Only these are served, from server/static/.
STATIC = {
    "playground.html": "text/html; charset=utf-8",
    "playground.js": "text/javascript; charset=utf-8",
    "playground.css": "text/css; charset=utf-8",
}


async def playground_page(request: Request) -> Response:
    # no-cache, not max-age: a new release's page must name its new script at once.
    return serve(request, _file("playground.html"), "no-cache", HEADERS)


async def playground_static(request: Request) -> Response:
    name = request.path_params["name"]
    if name not in STATIC or name == "playground.html":
        raise NotFound(f"no playground file {name!r}")
    return serve(request, _file(name), STATIC_CACHE, HEADERS)


def playground_routes() -> list[BaseRoute]:
    return [
        Route("/playground", playground_page, methods=["GET", "HEAD"]),
        Route("/playground/static/{name}", playground_static, methods=["GET", "HEAD"]),
    ]


def _file(name: str) -> Asset:
    return packaged("server", name, STATIC[name])
