"""GET /docs: Swagger UI from the files the package installs, in a real headless Chromium
(Debian's, driven by playwright; no browser download), loading nothing from anywhere but us."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

import pytest
from conftest import error_body as error
from playwright.sync_api import sync_playwright
from test_server import serving

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
]


@pytest.mark.parametrize(
    ("path", "media_type"),
    [
        ("/docs", "text/html"),
        ("/docs/static/docs.js", "text/javascript"),
        ("/docs/static/swagger-ui-bundle.js", "text/javascript"),
        ("/docs/static/swagger-ui.css", "text/css"),
        ("/docs/static/favicon-32x32.png", "image/png"),
    ],
)
def test_the_docs_files_are_public_typed_cached_and_fenced_by_a_csp(client, path, media_type):
    r = client.get(path)  # no key: the page describes, it does not act

    assert r.status_code == 200
    assert r.headers["content-type"].split(";")[0] == media_type
    assert r.headers["x-content-type-options"] == "nosniff"
    assert "default-src 'none'" in r.headers["content-security-policy"]
    assert r.headers["cache-control"] in ("no-cache", "public, max-age=86400")
    again = client.get(path, headers={"If-None-Match": r.headers["etag"]})
    assert (again.status_code, again.content) == (304, b"")


@pytest.mark.parametrize(
    "path",
    [
        "/docs/static/",
        "/docs/static/swagger-editor-bundle.js",  # in the wheel, not on the list
        "/docs/static/..%2F..%2Fopenapi.py",
        "/docs/static/LICENSE",
    ],
)
def test_nothing_but_the_listed_docs_files_is_served(client, path):
    assert error(client.get(path), 404)["code"] == "not_found"


def test_the_document_is_public_and_revalidates(client):
    r = client.get("/v1/openapi.json")
    assert r.status_code == 200 and r.headers["cache-control"] == "no-cache"
    assert (
        client.get("/v1/openapi.json", headers={"If-None-Match": r.headers["etag"]}).status_code
        == 304
    )


def test_docs_renders_the_operations_in_headless_chromium_with_no_outside_request(tmp_path):
    with serving(tmp_path) as served:
        requested, problems = render_docs(served.base, tmp_path / "docs.png")

    assert (tmp_path / "docs.png").stat().st_size > 10_000
    hosts = {urlsplit(url).hostname for url in requested if not url.startswith("data:")}
    assert hosts == {"127.0.0.1"}, requested
    assert f"{served.base}/v1/openapi.json" in requested
    assert problems == []


def render_docs(base: str, screenshot: Path) -> tuple[list[str], list[str]]:
    """Open /docs in Chromium: every URL the page requested, and every error it logged."""
    assert Path(CHROMIUM).exists(), "Debian's chromium is needed: apt-get install chromium"
    requested: list[str] = []
    problems: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page()
            page.on("request", lambda request: requested.append(request.url))
            page.on("pageerror", lambda exc: problems.append(str(exc)))
            page.on(
                "console",
                lambda msg: problems.append(msg.text) if msg.type == "error" else None,
            )
            page.goto(f"{base}/docs")
            # Swagger UI renders after it fetched and parsed the document: wait for it.
            page.get_by_text("/v1/image/resize", exact=True).first.wait_for(timeout=30_000)
            page.get_by_text("/v1/image/process", exact=True).first.wait_for(timeout=30_000)
            assert page.get_by_text("/t/{template}/{id}", exact=True).first.is_visible()
            assert page.get_by_text("/v1/urls", exact=True).first.is_visible()
            # Opened, an operation shows its body and answers, drawn under the same CSP.
            page.get_by_text("/v1/image/resize", exact=True).first.click()
            page.get_by_text("Request body", exact=True).first.wait_for(timeout=30_000)
            page.screenshot(path=str(screenshot))
        finally:
            browser.close()
    return requested, problems
