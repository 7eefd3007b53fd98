"""The admin API (SPEC §5): uploading and describing assets, and the bearer-token fence."""

from __future__ import annotations

import contextlib
import gc
import hashlib
import logging
import stat
import warnings
from collections.abc import Iterator
from urllib.parse import quote

import pytest
from conftest import AUTH, IMAGES, TOKEN, decode, error_body, upload

ASSET_KEYS = {"id", "url", "mime", "width", "height", "bytes", "etag", "created_at"}


@contextlib.contextmanager
def resource_warnings() -> Iterator[list[str]]:
    """Collect the ResourceWarnings (unclosed files) raised inside the block, garbage included."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        leaks: list[str] = []
        yield leaks
        gc.collect()
    leaks.extend(str(w.message) for w in caught if issubclass(w.category, ResourceWarning))


def _put(client, asset_id, data, *, multipart=False, headers=AUTH):
    if multipart:
        files = {"file": ("upload.bin", data, "application/octet-stream")}
        return client.put(f"/v1/assets/{asset_id}", files=files, headers=headers)
    return client.put(f"/v1/assets/{asset_id}", content=data, headers=headers)


@pytest.mark.parametrize("multipart", [False, True], ids=["raw-body", "multipart"])
def test_an_upload_is_created_then_replaced_and_described_as_the_spec_says(client, multipart):
    data = (IMAGES / "orient6.jpg").read_bytes()

    first = _put(client, "people/friends.jpg", data, multipart=multipart)
    again = _put(client, "people/friends.jpg", data, multipart=multipart)

    assert (first.status_code, again.status_code) == (201, 200)
    for r in (first, again):
        assert r.headers["cache-control"] == "no-store"
        assert r.headers["content-type"] == "application/json"
        body = r.json()
        assert set(body) == ASSET_KEYS
        assert body["id"] == "people/friends.jpg"
        assert body["url"] == "http://testserver/t/_/people/friends.jpg"
        assert body["mime"] == "image/jpeg"
        # Stored sideways with EXIF orientation 6: clients are told the upright size.
        assert (body["width"], body["height"]) == (399, 600)
        assert body["bytes"] == len(data)
        assert body["etag"] == hashlib.sha256(data).hexdigest()
        assert body["created_at"].endswith("Z")


def test_get_describes_an_asset_exactly_as_its_upload_did(client):
    put = upload(client, "photo.jpg", "photo.jpg")

    r = client.get("/v1/assets/photo.jpg", headers=AUTH)

    assert r.status_code == 200
    assert r.headers["cache-control"] == "no-store"
    assert r.json() == put.json()
    assert (r.json()["width"], r.json()["height"]) == (800, 600)


@pytest.mark.parametrize(
    "asset_id",
    ["products/42/front.jpg", "café/東京 night.jpg", "a/b/c/d/e/f/g/h.jpg"],
    ids=["slashes", "unicode-and-space", "deep"],
)
def test_ids_with_slashes_and_unicode_upload_describe_and_deliver(client, asset_id):
    put = upload(client, asset_id, "photo.jpg")

    got = client.get(f"/v1/assets/{asset_id}", headers=AUTH)
    image = client.get(put.json()["url"] + "?w=100")

    assert put.status_code == 201
    assert put.json()["id"] == asset_id
    assert put.json()["url"] == f"http://testserver/t/_/{quote(asset_id)}"
    assert got.status_code == 200
    assert got.json()["id"] == asset_id
    assert image.status_code == 200
    assert decode(image.content).width == 100


def test_replacing_an_asset_serves_the_new_pixels_under_a_new_etag(client):
    upload(client, "card.jpg", "photo.jpg")
    before = client.get("/t/_/card.jpg?w=100")
    cached = client.get("/t/_/card.jpg?w=100")
    assert cached.headers["x-cache"] == "hit-memory"  # so a stale entry exists to be skipped

    replaced = upload(client, "card.jpg", "orient6.jpg")
    after = client.get("/t/_/card.jpg?w=100")
    fresh = client.get(upload(client, "fresh.jpg", "orient6.jpg").json()["url"] + "?w=100")

    new_bytes = (IMAGES / "orient6.jpg").read_bytes()
    assert replaced.status_code == 200
    assert replaced.json()["etag"] == hashlib.sha256(new_bytes).hexdigest()
    assert (
        replaced.json()["etag"] != hashlib.sha256((IMAGES / "photo.jpg").read_bytes()).hexdigest()
    )
    assert after.status_code == 200
    assert after.headers["etag"] != before.headers["etag"]
    assert after.headers["x-cache"] == "miss"
    assert (decode(before.content).width, decode(before.content).height) == (100, 75)
    assert decode(after.content).width == 100
    assert decode(after.content).height > 140
    assert after.content == fresh.content


@pytest.mark.parametrize(("query", "size"), [("w=100", (100, 150)), ("w=50", (50, 75))])
def test_an_upright_upload_is_delivered_at_its_own_aspect_ratio(client, query, size):
    upload(client, "friends.jpg", "orient6.jpg")  # upright 399x600

    image = decode(client.get(f"/t/_/friends.jpg?{query}").content)

    assert (image.width, image.height) == size


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": f"Basic {TOKEN}"},
        {"Authorization": f"Token {TOKEN}"},
        {"Authorization": "Bearer"},
        {"Authorization": "Bearer not-the-admin-token-0123456789"},
        {"Authorization": f"Bearer {TOKEN}x"},
        {"Authorization": f"Bearer {TOKEN[:-1]}"},
    ],
    ids=["none", "basic", "other-scheme", "empty-bearer", "wrong", "longer", "prefix"],
)
@pytest.mark.parametrize("method", ["GET", "PUT"])
def test_admin_calls_without_a_valid_bearer_token_are_401_json(client, headers, method):
    upload(client, "photo.jpg", "photo.jpg")
    body = (IMAGES / "orient6.jpg").read_bytes() if method == "PUT" else None

    r = client.request(method, "/v1/assets/photo.jpg", content=body, headers=headers)

    assert r.status_code == 401
    assert r.headers["cache-control"] == "no-store"
    assert r.json()["error"]["code"] == "unauthorized"
    # A refused replace changed nothing.
    assert client.get("/v1/assets/photo.jpg", headers=AUTH).json()["width"] == 800


def test_a_401_names_the_bearer_scheme_in_www_authenticate(client):
    r = client.get("/v1/assets/photo.jpg")

    assert r.status_code == 401
    assert r.headers.get("www-authenticate", "").lower().startswith("bearer")


def test_without_configured_tokens_one_is_generated_0600_and_never_logged(
    make_client, settings, caplog, capfd
):
    caplog.set_level(logging.DEBUG)
    client = make_client(admin_tokens=())
    path = settings.data_dir / "admin-token"
    token = path.read_text().strip()
    bearer = {"Authorization": f"Bearer {token}"}

    put = client.put(
        "/v1/assets/photo.jpg", content=(IMAGES / "photo.jpg").read_bytes(), headers=bearer
    )
    got = client.get("/v1/assets/photo.jpg", headers=bearer)
    refused = client.get("/v1/assets/photo.jpg", headers=AUTH)  # the conftest token is not set

    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert len(token) >= 16
    assert (put.status_code, got.status_code, refused.status_code) == (201, 200, 401)
    assert str(path) in caplog.text  # the log says where the token is...
    out, err = capfd.readouterr()
    for text in (caplog.text, out, err):
        assert token not in text  # ...and never what it is


def test_a_generated_token_is_kept_across_restarts(make_client, settings):
    make_client(admin_tokens=())
    token = (settings.data_dir / "admin-token").read_text().strip()

    restarted = make_client(admin_tokens=())
    r = restarted.get("/v1/assets/photo.jpg", headers={"Authorization": f"Bearer {token}"})

    assert (settings.data_dir / "admin-token").read_text().strip() == token
    assert r.status_code == 404


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({"content": b""}, "empty"),
        ({"files": {"image": ("a.jpg", b"x", "image/jpeg")}}, "'file'"),
        ({"files": {"file": ("a.jpg", b"", "image/jpeg")}}, "empty"),
        ({"data": {"file": "not a file"}, "files": {"other": ("a", b"x")}}, "'file'"),
    ],
    ids=["empty-body", "multipart-without-file", "multipart-empty-file", "file-as-text-field"],
)
def test_an_upload_without_image_bytes_is_a_400_naming_the_problem(client, kwargs, needle):
    # Swallow the temp-file leak here: test_a_refused_multipart_upload_closes_its_files pins it.
    with resource_warnings():
        r = client.put("/v1/assets/x.jpg", headers=AUTH, **kwargs)

    assert r.status_code == 400
    assert r.headers["cache-control"] == "no-store"
    assert needle in r.json()["error"]["message"]
    assert client.get("/v1/assets/x.jpg", headers=AUTH).status_code == 404


def test_a_refused_multipart_upload_closes_its_files(client):
    with resource_warnings() as leaks:
        r = client.put(
            "/v1/assets/x.jpg", files={"image": ("a.jpg", b"x" * 100, "image/jpeg")}, headers=AUTH
        )

    assert r.status_code == 400
    assert leaks == []


def test_a_malformed_multipart_body_is_a_400(client):
    headers = {**AUTH, "Content-Type": "multipart/form-data; boundary=xyz"}

    r = client.put("/v1/assets/x.jpg", content=b"--xyz\r\nnonsense", headers=headers)

    assert r.status_code == 400
    assert r.json()["error"]["param"] == "file"


# (Plain `..` segments never reach the server: HTTP clients normalise them away.)
@pytest.mark.parametrize("asset_id", ["a//b.jpg", "a/%2e%2e/b.jpg", "a/%2E/b.jpg", "a\\b.jpg"])
def test_an_upload_to_an_unsafe_id_is_a_400(client, asset_id):
    r = client.put(
        f"/v1/assets/{asset_id}", content=(IMAGES / "photo.jpg").read_bytes(), headers=AUTH
    )

    assert r.status_code == 400
    assert r.json()["error"]["code"] == "invalid_id"


def test_an_unknown_asset_is_a_404_json(client):
    r = client.get("/v1/assets/nope.jpg", headers=AUTH)

    assert r.status_code == 404
    assert r.headers["cache-control"] == "no-store"
    assert r.json()["error"]["code"] == "asset_not_found"


@pytest.mark.parametrize("limit", ["%C2%B2", "%D9%A3", "9" * 5000, "0", "1001", "-1", "1.5"])
def test_a_list_limit_that_is_not_1_to_1000_in_ascii_digits_is_a_400(client, limit):
    # '²' and Arabic-Indic digits pass str.isdigit but not int(): once a 500.
    r = client.get(f"/v1/assets?limit={limit}", headers=AUTH)
    assert r.status_code == 400
    assert r.json()["error"]["param"] == "limit"


def test_a_write_the_data_dir_refuses_is_a_503_with_retry_after(client, settings):
    # The original's file name is taken by a folder with something in it: the metadata
    # reads fine, then the atomic rename fails (as on a full or read-only disk; root
    # ignores permissions, so a chmod would not do it). Once a 500.
    data = (IMAGES / "photo.jpg").read_bytes()
    h = hashlib.sha256(b"a.jpg").hexdigest()
    blocker = settings.data_dir / "assets" / h[:2] / h / f"{hashlib.sha256(data).hexdigest()}.bin"
    (blocker / "x").mkdir(parents=True)
    r = client.put("/v1/assets/a.jpg", content=data, headers=AUTH)
    body = error_body(r, 503)
    assert body["code"] == "storage_unavailable"
    assert body["message"].startswith("storage write failed")
    assert r.headers["retry-after"]
    assert str(settings.data_dir) not in r.text  # no path on disk in a public message
    assert client.get("/v1/assets/a.jpg", headers=AUTH).status_code == 404  # nothing half-stored
