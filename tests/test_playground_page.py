"""/playground in a real headless Chromium (Debian's, driven by playwright, as
test_docs_page.py does) against a real `imgcdn serve`: the key pasted in, an upload, the
controls, the side-by-side, and the signed URL an API key gets."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import httpx2 as httpx
import pyvips
from conftest import IMAGES, decode
from playwright.sync_api import Page, sync_playwright
from test_docs_page import CHROMIUM, CHROMIUM_ARGS
from test_server import serving

SIGNING_KEY = "playground-test-signing-key-0123456789abcdef"
WAIT_MS = 30_000
FILES = ["playground", "playground.js", "playground.css"]


@dataclass
class Browsed:
    page: Page
    requested: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)  # page errors, console errors, CSP

    def width_becomes(self, selector: str, width: int) -> None:
        self.page.wait_for_function(
            "([css, width]) => document.querySelector(css).naturalWidth === width",
            arg=[selector, width],
            timeout=WAIT_MS,
        )

    def fact(self, scope: str, name: str) -> str:
        found = self.page.locator(f"{scope} [data-fact={name!r}]")
        found.wait_for(timeout=WAIT_MS)
        return found.inner_text()


@contextlib.contextmanager
def browsing(base: str) -> Iterator[Browsed]:
    """A Chromium tab on /playground, recording every request and every error it logs (a
    Content-Security-Policy violation is logged as a console error)."""
    assert Path(CHROMIUM).exists(), "Debian's chromium is needed: apt-get install chromium"
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1200, "height": 1400})
            browsed = Browsed(page)
            page.on("request", lambda request: browsed.requested.append(request.url))
            page.on("pageerror", lambda exc: browsed.problems.append(str(exc)))
            page.on(
                "console",
                lambda msg: browsed.problems.append(msg.text) if msg.type == "error" else None,
            )
            page.goto(f"{base}/playground")
            page.wait_for_load_state("networkidle")
            yield browsed
        finally:
            browser.close()


def use_key(browsed: Browsed, key: str) -> None:
    browsed.page.fill("#key", key)
    browsed.page.click("#use-key")


def test_an_admin_token_uploads_resizes_and_compares_two_formats_in_chromium(tmp_path):
    with serving(tmp_path) as served, browsing(served.base) as browsed:
        page = browsed.page
        before_key = [urlsplit(url).path.rsplit("/", 1)[-1] for url in browsed.requested]
        use_key(browsed, served.token)
        page.set_input_files("#file", str(IMAGES / "photo.jpg"))
        page.click("#upload")
        page.locator("#asset option").first.wait_for(state="attached", timeout=WAIT_MS)
        asset_id = page.input_value("#asset")
        browsed.width_becomes("#result", 800)  # no parameters yet: the original's size

        page.fill("#w", "200")
        browsed.width_becomes("#result", 200)
        page.fill("#w", "120")
        browsed.width_becomes("#result", 120)
        shown_url = page.inner_text("#url")
        facts = {n: browsed.fact("#facts", n) for n in ("bytes", "format", "dimensions")}
        timing = browsed.fact("#facts", "server-timing")
        cache = browsed.fact("#facts", "x-cache")
        page.press("#w", "Enter")  # the same URL again: the server's variant cache answers
        page.wait_for_function(
            "() => document.querySelector('#facts [data-fact=x-cache]').textContent !== 'miss'",
            timeout=WAIT_MS,
        )
        cache_again = browsed.fact("#facts", "x-cache")

        page.select_option("#a-fmt", "webp")
        page.select_option("#b-fmt", "png")
        page.click("#compare-run")
        sides = {}
        for side in ("#side-a", "#side-b"):
            browsed.width_becomes(f"{side} img", 120)
            sides[side] = (browsed.fact(side, "format"), int(browsed.fact(side, "bytes")))
        page.screenshot(path=str(tmp_path / "playground.png"), full_page=True)
        page.select_option("#fmt", "auto")  # negotiated with what Chromium's <img> accepts
        page.wait_for_function(
            "() => document.querySelector('#facts [data-fact=format]').textContent"
            " === 'image/avif'",
            timeout=WAIT_MS,
        )
        browsed.width_becomes("#result", 120)  # decoded, not only fetched

        with httpx.Client(base_url=served.base, timeout=30) as http:
            stored = http.get("/v1/assets", headers={"Authorization": f"Bearer {served.token}"})
            served_variant = http.get(shown_url)

    assert sorted(before_key) == sorted(
        FILES
    )  # the page alone: its three files, no API call without a key
    hosts = {
        urlsplit(url).hostname
        for url in browsed.requested
        if not url.startswith(("blob:", "data:"))
    }
    assert hosts == {"127.0.0.1"}, browsed.requested
    assert browsed.problems == [], browsed.requested
    assert asset_id in [item["id"] for item in stored.json()["items"]]
    assert "w=120" in shown_url and "sig=" not in shown_url  # no signing keys: unsigned
    assert facts == {
        "bytes": str(len(served_variant.content)),
        "format": "image/jpeg",
        "dimensions": "120x90",
    }
    assert "total;dur=" in timing
    assert (cache, cache_again) == ("miss", "hit-memory")
    assert sides["#side-a"][0] == "image/webp" and sides["#side-b"][0] == "image/png"
    assert sides["#side-a"][1] < sides["#side-b"][1]  # lossy WebP beats lossless PNG
    shot = pyvips.Image.new_from_file(str(tmp_path / "playground.png"))
    assert (tmp_path / "playground.png").stat().st_size > 30_000
    assert shot.width == 1200 and shot.height >= 1000
    assert shot.deviate() > 20  # not blank: text, controls and three photos


def test_an_api_key_gets_a_signed_url_that_serves_and_the_unsigned_one_would_not(tmp_path):
    with serving(tmp_path, IMGCDN_SIGNING_KEYS=SIGNING_KEY) as served:
        admin = {"Authorization": f"Bearer {served.token}"}
        with httpx.Client(base_url=served.base, timeout=30) as http:
            photo = (IMAGES / "photo.jpg").read_bytes()
            assert http.put("/v1/assets/photo.jpg", content=photo, headers=admin).is_success
            api_key = served.new_key("playground")
        with browsing(served.base) as browsed:
            use_key(browsed, api_key)
            browsed.width_becomes("#result", 800)
            browsed.page.fill("#w", "100")
            browsed.width_becomes("#result", 100)
            shown_url = browsed.page.inner_text("#url")
            stored_key = browsed.page.evaluate("sessionStorage.getItem('imgcdn.playground.key')")
        with httpx.Client(timeout=30) as http:
            signed = http.get(shown_url)
            unsigned = http.get(shown_url.partition("&sig=")[0])

    assert browsed.problems == [], browsed.requested
    assert stored_key == api_key
    assert "/t/_/photo.jpg?" in shown_url and "w=100" in shown_url and "&sig=" in shown_url
    assert signed.status_code == 200
    assert decode(signed.content).width == 100
    assert unsigned.status_code in (401, 403)


def test_a_refused_parameter_shows_the_servers_error_naming_the_field(tmp_path):
    with serving(tmp_path) as served, browsing(served.base) as browsed:
        admin = {"Authorization": f"Bearer {served.token}"}
        photo = (IMAGES / "photo.jpg").read_bytes()
        assert httpx.put(
            f"{served.base}/v1/assets/photo.jpg", content=photo, headers=admin
        ).is_success
        use_key(browsed, served.token)
        browsed.width_becomes("#result", 800)
        browsed.page.fill("#q", "500")
        alert = browsed.page.locator("#error")
        alert.wait_for(state="visible", timeout=WAIT_MS)
        said = alert.inner_text()

    assert "400 invalid_param" in said and "(transform.quality)" in said
    # The browser logs the 400 itself; nothing else (no uncaught error) may be logged.
    assert all("status of 400" in problem for problem in browsed.problems), browsed.problems
