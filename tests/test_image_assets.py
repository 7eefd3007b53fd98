"""SPEC §6 "Assets and URLs" under seed 002's names, through the real app: upload, get, list,
delete, deliver_url, signed_url, transformation create and list; and the URLs they hand
out, fetched and decoded."""

from __future__ import annotations

import base64
import hashlib
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import httpx2
import pytest
import pyvips
from conftest import AUTH, IMAGES, decode, wait_until
from conftest import error_body as error
from doc_examples import run_examples, section
from starlette.testclient import TestClient

from server import auth
from server.errors import AssetNotFound, InvalidId
from server.routes.image_assets import own_id, upload_id
from server.transforms import TRANSFORM, from_params, to_params

KEY = "image-assets-signing-key-0123456789abcdef"
DOCS = IMAGES.parent.parent / "docs" / "processing-assets.md"
PHOTO = (IMAGES / "photo.jpg").read_bytes()  # 800x600
ALPHA = (IMAGES / "alpha.png").read_bytes()  # 300x203
IMAGE_ASSET = {"id", "url", "mime", "width", "height", "bytes", "etag", "created_at"}


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def content_id(data: bytes, ext: str, prefix: str = "") -> str:
    return f"{prefix}{hashlib.sha256(data).hexdigest()[:32]}.{ext}"


def upload(client: TestClient, data: bytes = PHOTO, **extra: Any) -> dict[str, Any]:
    r = client.post("/v1/image/upload", json={"file": b64(data), **extra}, headers=AUTH)
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


def post(client: TestClient, path: str, body: Any) -> httpx2.Response:
    return client.post(f"/v1/image/{path}", json=body, headers=AUTH)


def served(client: TestClient, url: str) -> pyvips.Image:
    """The image a URL handed out serves: 200, an image, decoded."""
    r = client.get(url)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("image/")
    return decode(r.content)


def query_of(url: str) -> dict[str, str]:
    return dict(parse_qsl(urlsplit(url).query))


@pytest.fixture
def keyed(make_client: Callable[..., TestClient]) -> TestClient:
    return make_client(signing_keys=(KEY,))


@pytest.fixture
def as_prefix(monkeypatch: pytest.MonkeyPatch) -> Callable[[str], None]:
    """Callers confined to a prefix, faked at auth.authenticate (a seam we own): the keys
    engineer's real keys carry the prefix through the same Caller."""

    def confine(prefix: str) -> None:
        async def authenticate(request: object, scope: str, fields: object = None) -> auth.Caller:
            return auth.Caller(key_id="k-test", prefix=prefix)

        monkeypatch.setattr(auth, "authenticate", authenticate)

    return confine


# --- upload ---------------------------------------------------------------------------


def test_an_upload_in_base64_is_stored_under_its_content_hash_and_described(client):
    body = upload(client, filename="holiday photo.jpg")
    assert set(body) == IMAGE_ASSET | {"filename"}
    assert body["id"] == content_id(PHOTO, "jpg")
    assert (body["mime"], body["width"], body["height"], body["bytes"]) == (
        "image/jpeg",
        800,
        600,
        len(PHOTO),
    )
    assert body["filename"] == "holiday photo.jpg"
    image = served(client, body["url"])
    assert (image.width, image.height) == (800, 600)


def test_an_upload_as_a_data_url_is_the_same_asset(client):
    first = upload(client, ALPHA)
    again = post(client, "upload", {"file": f"data:image/png;base64,{b64(ALPHA)}"})
    assert again.status_code == 200, again.text
    assert again.json()["id"] == first["id"] == content_id(ALPHA, "png")


@pytest.mark.parametrize("field", ["file", "image"])
def test_a_multipart_upload_takes_the_file_in_field_file_or_image(client, field):
    files = {field: ("x.png", ALPHA, "image/png")}
    r = client.post("/v1/image/upload", files=files, data={"filename": "x.png"}, headers=AUTH)
    assert r.status_code == 200, r.text
    assert r.json()["id"] == content_id(ALPHA, "png")
    assert r.json()["filename"] == "x.png"


@pytest.mark.parametrize(
    "file", ["...", "/home/me/x.jpg", "C:\\photos\\x.jpg", "data:image/png,notbase64", 42, ""]
)
def test_an_upload_whose_file_is_not_base64_is_a_400_naming_file_and_stores_nothing(client, file):
    r = post(client, "upload", {"file": file})
    assert error(r, 400)["param"] == "file"
    assert client.get("/v1/image/list", headers=AUTH).json()["items"] == []


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({}, "file"),
        ({"file": b64(PHOTO), "filename": "a/b.jpg"}, "filename"),
        ({"file": b64(PHOTO), "filename": "a\nb.jpg"}, "filename"),
        ({"file": b64(PHOTO), "filename": "x" * 256}, "filename"),
        ({"file": b64(PHOTO), "filename": 7}, "filename"),
        ({"file": b64(PHOTO), "name": "x"}, "name"),
        ({"file": b64(PHOTO), "idempotency_key": "has space"}, "idempotency_key"),
    ],
)
def test_a_bad_upload_field_is_a_400_naming_it(client, body, param):
    assert error(post(client, "upload", body), 400)["param"] == param


def test_an_upload_that_is_no_image_is_a_415_and_stores_nothing(client):
    r = post(client, "upload", {"file": b64(b"just some text, not an image")})
    assert error(r, 415)["code"] == "unsupported_format"
    assert client.get("/v1/image/list", headers=AUTH).json()["items"] == []


def test_an_upload_with_both_a_file_part_and_a_file_field_is_a_400(client):
    files = {"image": ("x.png", ALPHA, "image/png")}
    r = client.post("/v1/image/upload", files=files, data={"file": b64(PHOTO)}, headers=AUTH)
    assert error(r, 400)["param"] == "file"


def test_an_upload_takes_an_idempotency_key(client):
    body = upload(client, idempotency_key="upload-1")
    assert body["id"] == content_id(PHOTO, "jpg")


# --- get, list, delete ----------------------------------------------------------------


def test_get_describes_an_uploaded_image_as_upload_did(client):
    uploaded = upload(client)
    r = client.get(f"/v1/image/get/{uploaded['id']}", headers=AUTH)
    assert r.status_code == 200, r.text
    assert r.headers["cache-control"] == "no-store"
    assert r.json() == uploaded


def test_get_of_an_unknown_id_is_a_404(client):
    assert error(client.get("/v1/image/get/ID", headers=AUTH), 404)["code"] == "asset_not_found"


def test_get_of_a_malformed_id_is_a_400_naming_id(client):
    assert error(client.get("/v1/image/get/a/%2e%2e/b", headers=AUTH), 400)["param"] == "id"


def test_list_pages_through_the_images_with_a_cursor(client):
    ids = sorted([upload(client, PHOTO)["id"], upload(client, ALPHA)["id"]])
    first = client.get("/v1/image/list?limit=1", headers=AUTH).json()
    assert [i["id"] for i in first["items"]] == ids[:1] and first["next_cursor"]
    second = client.get(f"/v1/image/list?limit=1&cursor={first['next_cursor']}", headers=AUTH)
    assert [i["id"] for i in second.json()["items"]] == ids[1:]
    assert second.json()["next_cursor"] is None
    assert set(second.json()["items"][0]) == IMAGE_ASSET


@pytest.mark.parametrize(("query", "param"), [("limit=0", "limit"), ("cursor=%%%", "cursor")])
def test_a_bad_list_query_is_a_400_naming_it(client, query, param):
    assert error(client.get(f"/v1/image/list?{query}", headers=AUTH), 400)["param"] == param


def test_delete_answers_ok_removes_the_image_and_its_urls_and_is_idempotent(client):
    uploaded = upload(client)
    url = post(client, "deliver_url", {"image_id": uploaded["id"], "transform": {"width": 50}})
    assert served(client, url.json()["url"]).width == 50
    for _ in range(2):
        r = client.delete(f"/v1/image/delete/{uploaded['id']}", headers=AUTH)
        assert (r.status_code, r.json()) == (200, {"ok": True})
    assert client.get(f"/v1/image/get/{uploaded['id']}", headers=AUTH).status_code == 404
    assert error(client.get(url.json()["url"]), 404)["code"] == "asset_not_found"


def test_delete_takes_an_idempotency_key_in_the_header_or_a_json_body(client):
    uploaded = upload(client)
    path = f"/v1/image/delete/{uploaded['id']}"
    r = client.request("DELETE", path, json={"idempotency_key": "del-1"}, headers=AUTH)
    assert (r.status_code, r.json()) == (200, {"ok": True})
    r = client.delete(path, headers={**AUTH, "Idempotency-Key": "del-2"})
    assert (r.status_code, r.json()) == (200, {"ok": True})


@pytest.mark.parametrize(
    ("content", "status", "param"),
    [('{"idempotency_key": 5}', 400, "idempotency_key"), ('{"force": true}', 400, "force")],
)
def test_a_bad_delete_body_is_a_4xx_naming_it(client, content, status, param):
    headers = {**AUTH, "Content-Type": "application/json"}
    r = client.request("DELETE", "/v1/image/delete/x.jpg", content=content, headers=headers)
    assert error(r, status)["param"] == param


def test_a_delete_body_that_is_not_json_is_a_415(client):
    headers = {**AUTH, "Content-Type": "image/jpeg"}
    r = client.request("DELETE", "/v1/image/delete/x.jpg", content=PHOTO[:100], headers=headers)
    assert error(r, 415)["code"] == "unsupported_media_type"


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/v1/image/upload"),
        ("GET", "/v1/image/get/x.jpg"),
        ("GET", "/v1/image/list"),
        ("DELETE", "/v1/image/delete/x.jpg"),
        ("POST", "/v1/image/deliver_url"),
        ("POST", "/v1/image/signed_url"),
        ("POST", "/v1/image/transformation/create"),
        ("GET", "/v1/image/transformation/list"),
    ],
)
def test_every_asset_and_url_endpoint_needs_a_key(client, method, path):
    body = {"file": b64(PHOTO)} if path.endswith("upload") else {"image_id": "x.jpg"}
    r = client.request(method, path, json=body if method == "POST" else None)
    assert error(r, 401)["code"] == "unauthorized"


# --- deliver_url and signed_url -------------------------------------------------------


def test_deliver_url_is_a_versioned_url_that_serves_the_transform(client):
    uploaded = upload(client)
    transform = {"width": 200, "format": "png"}
    r = post(client, "deliver_url", {"image_id": uploaded["id"], "transform": transform})
    assert r.status_code == 200, r.text
    assert set(r.json()) == {"url"}
    url = r.json()["url"]
    assert uploaded["etag"].startswith(query_of(url)["v"]) and "sig" not in query_of(url)
    image = served(client, url)
    assert (image.width, image.height, image.get("vips-loader")) == (200, 150, "pngload_buffer")


def test_deliver_url_without_a_transform_serves_the_image_as_stored(client):
    uploaded = upload(client, ALPHA)
    url = post(client, "deliver_url", {"image_id": uploaded["id"]}).json()["url"]
    assert (served(client, url).width, served(client, url).height) == (300, 203)


def test_deliver_url_on_a_server_with_keys_is_signed_and_serves(keyed):
    uploaded = upload(keyed)
    r = post(keyed, "deliver_url", {"image_id": uploaded["id"], "transform": {"width": 120}})
    url = r.json()["url"]
    assert "sig" in query_of(url) and "exp" not in query_of(url)
    assert served(keyed, url).width == 120
    assert served(keyed, uploaded["url"]).width == 800  # ImageAsset.url is signed too
    assert keyed.get(url.split("&sig=")[0]).status_code == 403


@pytest.mark.parametrize(
    ("transform", "size"),
    [
        ({"width": 100, "height": 100}, (100, 100)),
        ({"width": 100, "height": 100, "fit": "inside"}, (100, 75)),
        ({"width": 100, "height": 100, "fit": "contain", "background": "#ff0000"}, (100, 100)),
        ({"width": 100, "dpr": 2}, (200, 150)),
        ({"width": 100, "rotate": 90}, (100, 133)),
        ({"crop": {"x": 0, "y": 0, "width": 400, "height": 200}}, (400, 200)),
        ({"crop": "100,100,300,300", "width": 150}, (150, 150)),
        ({"width": 90, "height": 30, "gravity": "north"}, (90, 30)),
        ({"width": 90, "height": 30, "gravity": "fp:0.5,0.2"}, (90, 30)),
        ({"width": 80, "flip": "horizontal", "blur": 1.5, "sharpen": 0.5}, (80, 60)),
        ({"width": 80, "format": "webp", "quality": 0}, (80, 60)),
    ],
)
def test_every_transform_field_reaches_the_image(client, transform, size):
    uploaded = upload(client)
    r = post(client, "deliver_url", {"image_id": uploaded["id"], "transform": transform})
    assert r.status_code == 200, r.text
    image = served(client, r.json()["url"])
    assert (image.width, image.height) == size


def test_a_background_fills_the_padding_in_the_colour_given(client):
    uploaded = upload(client)
    transform = {"width": 100, "height": 100, "fit": "contain", "background": "00ff00"}
    url = post(client, "deliver_url", {"image_id": uploaded["id"], "transform": transform})
    image = served(client, url.json()["url"])
    corner = image.crop(0, 0, 100, 5)  # 800x600 in 100x100: 12.5 px bands above and below
    assert corner.extract_band(1).avg() > 200 and corner.extract_band(0).avg() < 60


@pytest.mark.parametrize(
    ("transform", "param"),
    [
        ({"width": 0}, "transform.width"),
        ({"width": 100000}, "transform.width"),
        ({"width": 9000}, "transform.width"),  # within the schema, past max output side
        ({"width": "wide"}, "transform.width"),
        ({"fit": "stretch"}, "transform.fit"),
        ({"format": "bmp"}, "transform.format"),
        ({"quality": 101}, "transform.quality"),
        ({"crop": "1,2,3"}, "transform.crop"),
        ({"crop": {"x": 0, "y": 0, "width": 0, "height": 5}}, "transform.crop.width"),
        ({"crop": {"x": 0, "y": 0}}, "transform.crop.height"),
        ({"gravity": "up"}, "transform.gravity"),
        ({"dpr": 5}, "transform.dpr"),
        ({"dpr": 1.255}, "transform.dpr"),
        ({"blur": 0.1}, "transform.blur"),
        ({"sharpen": 11}, "transform.sharpen"),
        ({"rotate": 0.00001}, "transform.rotate"),
        ({"flip": "sideways"}, "transform.flip"),
        ({"background": "red"}, "transform.background"),
        ({"template": "Not A Name"}, "transform.template"),
        ({"w": 100}, "transform.w"),
        ({"x": 1}, "transform.x"),
        ("...", "transform"),
    ],
)
def test_a_bad_transform_is_a_400_naming_the_transform_field(client, transform, param):
    uploaded = upload(client)
    r = post(client, "deliver_url", {"image_id": uploaded["id"], "transform": transform})
    assert error(r, 400)["param"] == param


@pytest.mark.parametrize(
    ("body", "status", "param"),
    [
        ({}, 400, "image_id"),
        ({"image_id": 5}, 400, "image_id"),
        ({"image_id": "a/../b.jpg"}, 400, "image_id"),
        ({"image_id": "missing.jpg"}, 404, "image_id"),
        ({"image_id": "missing.jpg", "transform": {"template": "nope"}}, 404, "image_id"),
        ([], 400, "body"),
    ],
)
def test_a_bad_deliver_url_body_is_a_4xx_naming_the_field(client, body, status, param):
    assert error(post(client, "deliver_url", body), status)["param"] == param


def test_deliver_url_through_an_unknown_template_is_a_404_naming_it(client):
    uploaded = upload(client)
    body = {"image_id": uploaded["id"], "transform": {"template": "nope"}}
    found = error(post(client, "deliver_url", body), 404)
    assert (found["code"], found["param"]) == ("template_not_found", "transform.template")


def test_signed_url_expires_and_is_refused_after(keyed):
    uploaded = upload(keyed)
    before = int(time.time())
    body = {"image_id": uploaded["id"], "expires_in_s": 2, "transform": {"width": 64}}
    r = post(keyed, "signed_url", body)
    assert r.status_code == 200, r.text
    answer = r.json()
    assert set(answer) == {"url", "expires_at"}
    expires_at = datetime.fromisoformat(answer["expires_at"].replace("Z", "+00:00")).timestamp()
    assert answer["expires_at"].endswith("Z")
    assert before + 2 <= expires_at <= time.time() + 2
    assert query_of(answer["url"])["exp"] == str(int(expires_at))
    assert served(keyed, answer["url"]).width == 64
    answers: list[httpx2.Response] = []

    def refused() -> bool:
        answers.append(keyed.get(answer["url"]))
        return answers[-1].status_code != 200

    wait_until(refused, seconds=10)
    assert error(answers[-1], 403)["code"] == "url_expired"


def test_signed_url_on_a_server_without_keys_is_a_400_saying_why(client):
    uploaded = upload(client)
    r = post(client, "signed_url", {"image_id": uploaded["id"], "expires_in_s": 60})
    found = error(r, 400)
    assert found["param"] == "expires_in_s" and "IMGCDN_SIGNING_KEYS" in found["message"]


@pytest.mark.parametrize("expires_in_s", [None, 0, -1, 31622401, "60", 1.5, True])
def test_a_bad_expires_in_s_is_a_400_naming_it(keyed, expires_in_s):
    uploaded = upload(keyed)
    body = {"image_id": uploaded["id"], "expires_in_s": expires_in_s}
    assert error(post(keyed, "signed_url", body), 400)["param"] == "expires_in_s"


# --- transformations ------------------------------------------------------------------


def test_a_transformation_is_a_template_that_renders_its_transform(client):
    uploaded = upload(client)
    transform = {
        "width": 64,
        "format": "webp",
        "crop": {"x": 0, "y": 0, "width": 400, "height": 400},
    }
    r = post(client, "transformation/create", {"name": "thumb", "transform": transform})
    assert r.status_code == 200, r.text
    made = r.json()
    assert set(made) == {"id", "name", "transform", "created_at"}
    assert (made["id"], made["name"]) == ("thumb", "thumb")
    assert made["transform"] == transform
    image = served(client, f"/t/thumb/{uploaded['id']}")
    assert (image.width, image.height, image.get("vips-loader")) == (64, 64, "webpload_buffer")
    url = post(
        client, "deliver_url", {"image_id": uploaded["id"], "transform": {"template": "thumb"}}
    )
    assert urlsplit(url.json()["url"]).path.startswith("/t/thumb/")
    assert served(client, url.json()["url"]).width == 64


def test_creating_a_transformation_under_a_name_in_use_is_a_409_and_changes_nothing(client):
    first = {"name": "card", "transform": {"width": 100}}
    assert post(client, "transformation/create", first).status_code == 200
    r = post(client, "transformation/create", {"name": "card", "transform": {"width": 300}})
    found = error(r, 409)
    assert (found["code"], found["param"]) == ("transformation_exists", "name")
    template = client.get("/v1/templates/card", headers=AUTH).json()
    assert (template["version"], template["params"]) == (1, {"w": "100"})


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"transform": {"width": 10}}, "name"),
        ({"name": "x"}, "transform"),
        ({"name": "_", "transform": {}}, "name"),
        ({"name": "Bad Name", "transform": {}}, "name"),
        ({"name": "x", "transform": {"width": 0}}, "transform.width"),
        ({"name": "x", "transform": {"width": 9000}}, "transform.width"),
        ({"name": "x", "transform": {"template": "y"}}, "transform.template"),
        ({"name": "x", "transform": {"gravity": "up"}}, "transform.gravity"),
        ({"name": "x", "transform": {"trim": 10}}, "transform.trim"),
    ],
)
def test_a_bad_transformation_is_a_400_naming_the_field_and_stores_nothing(client, body, param):
    assert error(post(client, "transformation/create", body), 400)["param"] == param
    assert client.get("/v1/templates", headers=AUTH).json()["items"] == []


def test_the_transformation_list_reads_every_template_back_as_a_transform(client):
    made = {"width": 200, "height": 100, "fit": "cover", "gravity": "smart", "dpr": 1.5}
    assert (
        post(client, "transformation/create", {"name": "a", "transform": made}).status_code == 200
    )
    admin = {"params": {"w": 50, "trim": 12, "meta": "keep", "rot": "90", "bg": "ffffff"}}
    assert client.put("/v1/templates/b", json=admin, headers=AUTH).status_code == 201
    first = client.get("/v1/image/transformation/list?limit=1", headers=AUTH).json()
    assert [t["name"] for t in first["items"]] == ["a"]
    assert first["items"][0]["transform"] == made
    rest = client.get(
        f"/v1/image/transformation/list?cursor={first['next_cursor']}", headers=AUTH
    ).json()
    assert rest["next_cursor"] is None
    [b] = rest["items"]
    assert b["transform"] == {
        "width": 50,
        "rotate": 90,
        "background": "ffffff",
        "trim": 12,  # no transform name: kept under its URL name
        "meta": "keep",
    }


# --- the caller's prefix --------------------------------------------------------------


def test_own_id_keeps_a_caller_inside_its_prefix():
    team = auth.Caller(key_id="k1", prefix="team-a/")
    assert own_id(team, "team-a/x.jpg", "id") == "team-a/x.jpg"
    with pytest.raises(AssetNotFound):
        own_id(team, "team-b/x.jpg", "id")
    with pytest.raises(AssetNotFound):
        own_id(team, "team-a.jpg", "id")
    with pytest.raises(InvalidId) as bad:
        own_id(team, "team-a/../team-b/x.jpg", "image_id")
    assert bad.value.param == "image_id"
    assert own_id(auth.Caller(key_id=None, prefix=""), "team-b/x.jpg", "id") == "team-b/x.jpg"


def test_upload_id_puts_the_content_hash_under_the_callers_prefix():
    team = auth.Caller(key_id="k1", prefix="team-a/")
    assert upload_id(team, ALPHA) == content_id(ALPHA, "png", "team-a/")


def test_a_prefixed_caller_sees_and_changes_only_its_own_images(client, as_prefix):
    theirs = upload(client, ALPHA)  # the admin token: no prefix
    as_prefix("team-a/")
    mine = upload(client, PHOTO)
    assert mine["id"] == content_id(PHOTO, "jpg", "team-a/")
    listed = client.get("/v1/image/list", headers=AUTH).json()["items"]
    assert [i["id"] for i in listed] == [mine["id"]]
    assert client.get(f"/v1/image/get/{mine['id']}", headers=AUTH).status_code == 200
    r = client.get(f"/v1/image/get/{theirs['id']}", headers=AUTH)
    assert error(r, 404)["code"] == "asset_not_found"  # not 403: its existence is not told
    r = post(client, "deliver_url", {"image_id": theirs["id"]})
    assert error(r, 404)["param"] == "image_id"
    r = client.delete(f"/v1/image/delete/{theirs['id']}", headers=AUTH)
    assert (r.status_code, r.json()) == (200, {"ok": True})
    as_prefix("")
    assert client.get(f"/v1/image/get/{theirs['id']}", headers=AUTH).status_code == 200


# --- seed 002's end-to-end steps that touch these endpoints ---------------------------


def test_the_seed_walkthrough_asset_steps_answer_as_the_seed_expects(client):
    json_headers = {**AUTH, "Content-Type": "application/json"}
    r = client.post("/v1/image/upload", content='{"file": "..."}', headers=json_headers)
    assert error(r, 400)["param"] == "file"
    assert error(client.get("/v1/image/get/ID", headers=AUTH), 404)["code"] == "asset_not_found"
    r = client.get("/v1/image/list", headers=AUTH)
    assert r.status_code == 200 and set(r.json()) == {"items", "next_cursor"}
    r = client.delete("/v1/image/delete/ID", headers=AUTH)
    assert (r.status_code, r.json()) == (200, {"ok": True})


def test_the_examples_in_the_docs_run_and_print_what_they_show(tmp_path):
    examples = section(DOCS.read_text(encoding="utf-8"), "### Examples")
    assert run_examples(examples, tmp_path) >= 15


def test_a_transform_maps_onto_url_params_and_back():
    sent = {
        "width": 300,
        "height": 200.0,
        "fit": "contain",
        "format": "jpg",
        "quality": 75,
        "crop": "10,20,400,300",
        "gravity": "southwest",
        "dpr": 1.5,
        "blur": 0.5,
        "sharpen": 1,
        "rotate": -90,
        "flip": "both",
        "background": "#FFAA00",
        "template": "card",
    }
    name, params = to_params(TRANSFORM.check(sent, "transform"))
    assert name == "card"
    assert params == {
        "w": "300",
        "h": "200",
        "fit": "contain",
        "fmt": "jpeg",
        "q": "75",
        "crop": "10,20,400,300",
        "g": "sw",
        "dpr": "1.5",
        "blur": "0.5",
        "sharpen": "1",
        "rot": "-90",
        "flip": "hv",
        "bg": "ffaa00",
    }
    assert from_params(params) == {
        "width": 300,
        "height": 200,
        "fit": "contain",
        "format": "jpeg",
        "quality": 75,
        "crop": {"x": 10, "y": 20, "width": 400, "height": 300},
        "gravity": "sw",
        "dpr": 1.5,
        "blur": 0.5,
        "sharpen": 1,
        "rotate": -90,
        "flip": "hv",
        "background": "ffaa00",
    }
