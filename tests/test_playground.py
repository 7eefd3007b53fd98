"""GET /playground and its static files: public (they carry no data), typed, cached, and
fenced by a strict Content-Security-Policy with no framing and no referrer."""

from __future__ import annotations

import re

import pytest
from conftest import error_body as error

FILES = [
    ("/playground", "text/html", "no-cache"),
    ("/playground/static/playground.js", "text/javascript", "public, max-age=86400"),
    ("/playground/static/playground.css", "text/css", "public, max-age=86400"),
]


@pytest.mark.parametrize(("path", "media_type", "cache_control"), FILES)
def test_the_playground_files_are_served_without_a_key_behind_a_strict_policy(
    client, path, media_type, cache_control
):
    r = client.get(path)  # no key: the files hold no data, every call they make needs one

    assert r.status_code == 200
    assert r.headers["content-type"].split(";")[0] == media_type
    assert r.headers["cache-control"] == cache_control
    csp = {
        directive.split()[0]: directive.split()[1:]
        for directive in r.headers["content-security-policy"].split("; ")
    }
    assert csp["default-src"] == ["'none'"]
    assert csp["script-src"] == ["'self'"]  # no 'unsafe-inline', no other origin
    assert csp["style-src"] == ["'self'"]
    assert csp["frame-ancestors"] == ["'none'"]
    assert r.headers["x-frame-options"] == "DENY"
    assert r.headers["referrer-policy"] == "no-referrer"
    assert r.headers["x-content-type-options"] == "nosniff"
    assert "set-cookie" not in r.headers
    again = client.get(path, headers={"If-None-Match": r.headers["etag"]})
    assert (again.status_code, again.content) == (304, b"")


def test_the_page_has_no_inline_script_or_style_so_the_policy_needs_no_exception(client):
    html = client.get("/playground").text

    assert "<script>" not in html and "<style" not in html and " style=" not in html
    assert 'src="playground/static/playground.js"' in html  # relative: works under a prefix
    assert re.search(r"<[^>]*\son[a-z]+\s*=", html) is None  # no onclick= and the like


def test_the_three_files_are_small(client):
    sizes = {path: len(client.get(path).content) for path, _, _ in FILES}

    assert sum(sizes.values()) < 24_000, sizes


@pytest.mark.parametrize(
    "path",
    [
        "/playground/static/",
        "/playground/static/playground.html",  # the page is /playground, once
        "/playground/static/docs.js",  # in server/static, not on this list
        "/playground/static/..%2Fopenapi.py",
    ],
)
def test_nothing_but_the_listed_playground_files_is_served(client, path):
    assert error(client.get(path), 404)["code"] == "not_found"
