"""The assets half of the admin API (SPEC §5): server-picked ids, listing, deleting and
reading originals back."""

from __future__ import annotations

import base64
import hashlib
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx2
import pytest
import pyvips
from conftest import AUTH, IMAGES, decode, upload
from conftest import error_body as error
from starlette.testclient import TestClient

ASSET_KEYS = {"id", "url", "mime", "width", "height", "bytes", "etag", "created_at"}


def webp_bytes() -> bytes:
    image = pyvips.Image.new_from_file(str(IMAGES / "photo.jpg")).resize(0.1)
    return bytes(image.webpsave_buffer(Q=70))


def tiny_jpeg(shade: int = 0) -> bytes:
    return bytes((pyvips.Image.black(8, 8) + shade).cast("uchar").jpegsave_buffer(Q=50))


SOURCES = {
    "jpg": (lambda: (IMAGES / "photo.jpg").read_bytes(), "image/jpeg"),
    "png": (lambda: (IMAGES / "alpha.png").read_bytes(), "image/png"),
    "gif": (lambda: (IMAGES / "anim.gif").read_bytes(), "image/gif"),
    "webp": (webp_bytes, "image/webp"),
}


def picked_id(data: bytes, ext: str, prefix: str = "") -> str:
    return f"{prefix}{hashlib.sha256(data).hexdigest()[:32]}.{ext}"


def post_file(client: TestClient, data: bytes, query: str = "") -> httpx2.Response:
    files = {"file": ("upload.bin", data, "application/octet-stream")}
    return client.post(f"/v1/assets{query}", files=files, headers=AUTH)


def post_json(client: TestClient, body: Any, query: str = "") -> httpx2.Response:
    return client.post(f"/v1/assets{query}", json=body, headers=AUTH)


def described(r: httpx2.Response, status: int) -> dict[str, Any]:
    assert r.status_code == status, r.text
    assert r.headers["cache-control"] == "no-store"
    body: dict[str, Any] = r.json()
    assert set(body) == ASSET_KEYS
    return body


# --- POST /v1/assets: the server picks the id ------------------------------------------


@pytest.mark.parametrize("ext", SOURCES)
def test_a_multipart_upload_gets_its_content_hash_as_id_created_then_found(client, ext):
    make, mime = SOURCES[ext]
    data = make()
    first = described(post_file(client, data), 201)
    again = described(post_file(client, data), 200)
    for body in (first, again):
        assert body["id"] == picked_id(data, ext)
        assert body["mime"] == mime
        assert body["bytes"] == len(data)
        assert body["etag"] == hashlib.sha256(data).hexdigest()
        assert body["url"] == f"http://testserver/t/_/{body['id']}"
    assert client.get(first["url"]).status_code == 200


@pytest.mark.parametrize("data_url", [False, True], ids=["plain", "data-url"])
def test_a_json_base64_upload_is_stored_under_its_content_hash(client, data_url):
    data = (IMAGES / "alpha.png").read_bytes()
    encoded = base64.b64encode(data).decode()
    if data_url:
        encoded = "data:image/png;base64," + encoded
    body = described(post_json(client, {"base64": encoded}), 201)
    assert body["id"] == picked_id(data, "png")
    assert (body["width"], body["height"], body["mime"]) == (
        decode(data).width,
        decode(data).height,
        "image/png",
    )
    original = client.get(f"/v1/assets/{body['id']}/original", headers=AUTH)
    assert original.content == data


@pytest.mark.parametrize(
    "spelling",
    [
        lambda b: base64.urlsafe_b64encode(b).decode(),
        lambda b: base64.b64encode(b).decode().rstrip("="),
        lambda b: base64.encodebytes(b).decode(),  # a line break every 76 characters
    ],
    ids=["url-safe", "unpadded", "line-broken"],
)
def test_a_json_upload_takes_base64_as_the_processing_api_does(client, spelling):
    data = (IMAGES / "alpha.png").read_bytes()
    body = described(post_json(client, {"base64": spelling(data)}), 201)
    assert body["id"] == picked_id(data, "png")


def test_the_same_bytes_by_multipart_and_by_base64_are_one_asset(client):
    data = (IMAGES / "photo.jpg").read_bytes()
    by_file = described(post_file(client, data), 201)
    by_json = described(post_json(client, {"base64": base64.b64encode(data).decode()}), 200)
    assert by_file["id"] == by_json["id"]


def test_a_prefix_puts_the_picked_id_in_a_folder(client):
    data = (IMAGES / "photo.jpg").read_bytes()
    encoded = base64.b64encode(data).decode()
    by_query = described(post_file(client, data, "?prefix=products/42/"), 201)
    by_body = described(post_json(client, {"base64": encoded, "prefix": "users/"}), 201)
    by_json_query = described(post_json(client, {"base64": encoded}, "?prefix=cats/"), 201)
    assert by_query["id"] == picked_id(data, "jpg", "products/42/")
    assert by_body["id"] == picked_id(data, "jpg", "users/")
    assert by_json_query["id"] == picked_id(data, "jpg", "cats/")
    listed = client.get("/v1/assets?prefix=products/", headers=AUTH).json()["items"]
    assert [item["id"] for item in listed] == [by_query["id"]]


@pytest.mark.parametrize("prefix", ["products", "../", "a//", 7])
def test_a_bad_prefix_is_a_400(client, prefix):
    data = base64.b64encode(tiny_jpeg()).decode()
    r = post_json(client, {"base64": data, "prefix": prefix})
    error(r, 400)
    assert client.get("/v1/assets", headers=AUTH).json()["items"] == []


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"base64": "not base64 at all!"}, "base64"),
        ({"base64": "QU=J"}, "base64"),  # padding inside the text
        ({"base64": 12345}, "base64"),
        ({"base64": "", "url": "http://example.com/a.jpg"}, "body"),
        ({}, "body"),
        ({"prefix": "a/"}, "body"),
        ([], "body"),
        ({"url": 5}, "url"),
    ],
)
def test_a_bad_json_upload_is_a_400_naming_the_field(client, body, param):
    assert error(post_json(client, body), 400)["param"] == param


def test_a_malformed_json_upload_is_a_400(client):
    r = client.post(
        "/v1/assets", content=b'{"base64": ', headers={**AUTH, "Content-Type": "application/json"}
    )
    assert error(r, 400)["param"] == "body"


@pytest.mark.parametrize(
    "data", [b"hello, this is not an image", b"%PDF-1.7\n" + b"0" * 64, b"BM" + b"\0" * 64]
)
def test_a_non_image_is_a_415_and_stores_nothing(client, data):
    r = post_json(client, {"base64": base64.b64encode(data).decode()})
    assert error(r, 415)["code"] == "unsupported_format"
    assert error(post_file(client, data), 415)["code"] == "unsupported_format"
    assert client.get("/v1/assets", headers=AUTH).json()["items"] == []


def test_an_image_over_the_byte_limit_is_a_413_and_stores_nothing(make_client):
    data = (IMAGES / "photo.jpg").read_bytes()
    client = make_client(max_source_bytes=len(data) - 1)
    r = post_json(client, {"base64": base64.b64encode(data).decode()})
    assert error(r, 413)["code"] == "source_too_large"
    assert error(post_file(client, data), 413)["code"] == "source_too_large"
    assert client.get("/v1/assets", headers=AUTH).json()["items"] == []
    # One byte under, the same kind of upload is fine.
    small = make_client(max_source_bytes=len(data))
    described(post_json(small, {"base64": base64.b64encode(data).decode()}), 201)


# --- POST /v1/assets {"url"} -----------------------------------------------------------


@pytest.fixture
def origin() -> Iterator[str]:
    """A plain HTTP origin on 127.0.0.1 serving tests/images; yields its base URL."""
    images = IMAGES

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            path = images / self.path.lstrip("/")
            if path.parent != images or not path.is_file():
                self.send_error(404)
                return
            data = path.read_bytes()
            self.send_response(200)
            self.send_header("Content-Type", "image/jpeg")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def test_a_url_upload_fetches_the_source_when_private_sources_are_allowed(make_client, origin):
    client = make_client(allow_private_sources=True)
    data = (IMAGES / "photo.jpg").read_bytes()
    body = described(post_json(client, {"url": f"{origin}/photo.jpg", "prefix": "web/"}), 201)
    assert body["id"] == picked_id(data, "jpg", "web/")
    assert (body["width"], body["height"], body["bytes"]) == (800, 600, len(data))
    original = client.get(f"/v1/assets/{body['id']}/original", headers=AUTH)
    assert original.content == data
    missing = post_json(client, {"url": f"{origin}/nope.jpg"})
    assert error(missing, 422)["param"] == "url"


def test_a_url_upload_from_a_loopback_origin_is_403_by_default(client, origin):
    r = post_json(client, {"url": f"{origin}/photo.jpg"})
    body = error(r, 403)
    assert (body["code"], body["param"]) == ("source_forbidden", "url")
    assert client.get("/v1/assets", headers=AUTH).json()["items"] == []


# --- GET /v1/assets: listing -----------------------------------------------------------

LISTED = ["a/1.jpg", "a/2.jpg", "a/3.jpg", "ab.jpg", "b/1.jpg", "c.jpg"]


@pytest.fixture
def library(client) -> TestClient:
    for n, asset_id in enumerate(reversed(LISTED)):
        r = client.put(f"/v1/assets/{asset_id}", content=tiny_jpeg(n * 20), headers=AUTH)
        assert r.status_code == 201, r.text
    return client


def every_page(client: TestClient, query: str) -> list[list[str]]:
    pages: list[list[str]] = []
    cursor = None
    while True:
        r = client.get(
            f"/v1/assets?{query}" + (f"&cursor={cursor}" if cursor else ""), headers=AUTH
        )
        assert r.status_code == 200, r.text
        assert r.headers["cache-control"] == "no-store"
        body = r.json()
        assert set(body) == {"items", "next_cursor"}
        assert all(set(item) == ASSET_KEYS for item in body["items"])
        pages.append([item["id"] for item in body["items"]])
        cursor = body["next_cursor"]
        if cursor is None:
            return pages
        assert len(pages) < 10, "the cursor never ran out"


def test_listing_pages_through_every_asset_in_id_order(library):
    assert every_page(library, "limit=2") == [LISTED[0:2], LISTED[2:4], LISTED[4:6]]
    assert every_page(library, "limit=4") == [LISTED[0:4], LISTED[4:6]]
    assert every_page(library, "limit=1000") == [LISTED]


@pytest.mark.parametrize(
    ("prefix", "expected"),
    [("a/", ["a/1.jpg", "a/2.jpg", "a/3.jpg"]), ("a", LISTED[:4]), ("b/", ["b/1.jpg"]), ("z", [])],
)
def test_a_prefix_filters_the_listing(library, prefix, expected):
    pages = every_page(library, f"prefix={prefix}&limit=2")
    assert [asset_id for page in pages for asset_id in page] == expected


def test_a_listing_item_describes_the_asset_as_get_does(library):
    items = library.get("/v1/assets?prefix=c", headers=AUTH).json()["items"]
    assert items == [library.get("/v1/assets/c.jpg", headers=AUTH).json()]


@pytest.mark.parametrize(
    ("query", "param"),
    [("limit=0", "limit"), ("limit=1001", "limit"), ("limit=x", "limit"), ("cursor=_-8", "cursor")],
)
def test_a_bad_listing_query_is_a_400_naming_it(library, query, param):
    assert error(library.get(f"/v1/assets?{query}", headers=AUTH), 400)["param"] == param


# --- DELETE /v1/assets/{id} ------------------------------------------------------------


def files_under(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if p.is_file()]


def test_delete_is_idempotent_and_drops_the_asset_its_variants_and_its_files(client, settings):
    upload(client, "shop/photo.jpg", "photo.jpg")
    url = "/t/_/shop/photo.jpg?w=100"
    client.get(url)
    assert client.get(url).headers["x-cache"] == "hit-memory"
    assert files_under(settings.data_dir / "assets")

    for _ in range(2):
        r = client.delete("/v1/assets/shop/photo.jpg", headers=AUTH)
        assert r.status_code == 204
        assert r.headers["cache-control"] == "no-store"

    assert error(client.get("/v1/assets/shop/photo.jpg", headers=AUTH), 404)["code"] == (
        "asset_not_found"
    )
    error(client.get("/v1/assets/shop/photo.jpg/original", headers=AUTH), 404)
    assert error(client.get(url), 404)["code"] == "asset_not_found"
    assert client.get("/v1/assets", headers=AUTH).json()["items"] == []
    assert files_under(settings.data_dir / "assets") == []

    # The same bytes again: the old variant was dropped, not left to be found again.
    upload(client, "shop/photo.jpg", "photo.jpg")
    assert client.get(url).headers["x-cache"] == "miss"


def test_deleting_one_asset_leaves_the_others_and_their_variants(client):
    upload(client, "keep.jpg", "photo.jpg")
    upload(client, "drop.jpg", "photo.jpg")
    for url in ("/t/_/keep.jpg?w=100", "/t/_/drop.jpg?w=100"):
        client.get(url)
    assert client.delete("/v1/assets/drop.jpg", headers=AUTH).status_code == 204
    assert client.get("/t/_/keep.jpg?w=100").headers["x-cache"] == "hit-memory"
    assert [i["id"] for i in client.get("/v1/assets", headers=AUTH).json()["items"]] == ["keep.jpg"]


def test_deleting_an_asset_that_never_existed_is_a_204(client):
    assert client.delete("/v1/assets/never/was.jpg", headers=AUTH).status_code == 204


@pytest.mark.parametrize("asset_id", ["a/%2e%2e/b.jpg", "a//b.jpg", "%2E%2E/x.jpg", "a\\b.jpg"])
def test_deleting_an_unsafe_id_is_a_400(client, asset_id):
    error(client.delete(f"/v1/assets/{asset_id}", headers=AUTH), 400)


# --- GET /v1/assets/{id}/original ------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "mime"),
    [("photo.jpg", "image/jpeg"), ("alpha.png", "image/png"), ("anim.gif", "image/gif")],
)
def test_the_original_comes_back_byte_for_byte_with_its_mime(client, name, mime):
    upload(client, f"originals/{name}", name)
    r = client.get(f"/v1/assets/originals/{name}/original", headers=AUTH)
    assert r.status_code == 200, r.text
    assert r.content == (IMAGES / name).read_bytes()
    assert r.headers["content-type"] == mime
    assert r.headers["cache-control"] == "no-store"
    assert r.headers["etag"] == f'"{hashlib.sha256(r.content).hexdigest()}"'


def test_the_original_needs_the_admin_token(client):
    upload(client, "photo.jpg", "photo.jpg")
    assert error(client.get("/v1/assets/photo.jpg/original"), 401)["code"] == "unauthorized"
