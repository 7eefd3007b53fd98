"""One JSON rule for every admin endpoint: a body is JSON when Content-Type says so, or when
Content-Type is missing, application/x-www-form-urlencoded or text/plain (what `curl -d`
sends) and the body starts with { or [. Anything else on a JSON endpoint is a 415 naming the
Content-Type; JSON sent where an image is expected is a 415 saying so, not "not a JPEG"."""

from __future__ import annotations

import base64
from typing import Any

import orjson
import pytest
from conftest import AUTH, IMAGES, upload
from conftest import error_body as error
from starlette.testclient import TestClient

PNG = (IMAGES / "alpha.png").read_bytes()

# Every admin endpoint that takes JSON: method, path, a body it accepts, the success status.
JSON_ENDPOINTS: dict[str, tuple[str, str, dict[str, Any], int]] = {
    "post-asset": ("POST", "/v1/assets", {"base64": base64.b64encode(PNG).decode()}, 201),
    "put-template": ("PUT", "/v1/templates/card", {"params": {"w": 100}}, 201),
    "post-urls": ("POST", "/v1/urls", {"id": "photo.jpg", "params": {"w": 100}}, 200),
    "post-purge": ("POST", "/v1/purge", {"id": "photo.jpg"}, 200),
}
JSON_ONLY = ["put-template", "post-urls", "post-purge"]  # POST /v1/assets takes images too
# None: no Content-Type at all. The others are what clients send when nobody said.
UNDECLARED = [None, "application/x-www-form-urlencoded", "text/plain", "text/plain; charset=UTF-8"]
DECLARED = ["application/json", "application/json; charset=utf-8"]


def send(client: TestClient, method: str, path: str, body: bytes, ctype: str | None) -> Any:
    headers = dict(AUTH) if ctype is None else {**AUTH, "Content-Type": ctype}
    return client.request(method, path, content=body, headers=headers)


def json_bytes(value: Any, lead: bytes = b"") -> bytes:
    return lead + orjson.dumps(value)


@pytest.fixture
def client_with_photo(client: TestClient) -> TestClient:
    upload(client, "photo.jpg", "photo.jpg")
    return client


@pytest.mark.parametrize("ctype", UNDECLARED + DECLARED)
@pytest.mark.parametrize("endpoint", JSON_ENDPOINTS)
def test_a_json_body_is_json_on_every_endpoint_whatever_curl_said(
    client_with_photo, endpoint, ctype
):
    method, path, body, status = JSON_ENDPOINTS[endpoint]

    r = send(client_with_photo, method, path, json_bytes(body, b" \r\n\t"), ctype)

    assert r.status_code == status, r.text
    assert r.headers["content-type"] == "application/json"


def test_curl_d_with_a_url_is_a_url_upload_not_a_415(client):
    # The report: curl -X POST /v1/assets -d '{"url": ...}' said "not a JPEG, PNG...".
    r = send(client, "POST", "/v1/assets", b'{"url": "http://127.0.0.1:1/a.jpg"}', None)

    body = error(r, 403)  # refused as a private address: it was read as a url upload
    assert body["param"] == "url"


@pytest.mark.parametrize("ctype", UNDECLARED)
@pytest.mark.parametrize("endpoint", JSON_ONLY)
def test_a_form_body_on_a_json_endpoint_is_a_415_naming_the_content_type(
    client_with_photo, endpoint, ctype
):
    method, path, _, _ = JSON_ENDPOINTS[endpoint]

    r = send(client_with_photo, method, path, b"id=photo.jpg&template=_", ctype)

    body = error(r, 415)
    assert body["code"] == "unsupported_media_type"
    assert "Content-Type: application/json" in body["message"]
    assert (repr(ctype) if ctype else "no Content-Type") in body["message"]


@pytest.mark.parametrize("ctype", ["image/png", "application/octet-stream", "multipart/form-data"])
@pytest.mark.parametrize("endpoint", JSON_ONLY)
def test_a_json_endpoint_refuses_a_declared_other_type_with_a_415(
    client_with_photo, endpoint, ctype
):
    method, path, body, _ = JSON_ENDPOINTS[endpoint]

    r = send(client_with_photo, method, path, json_bytes(body), ctype)

    assert error(r, 415)["code"] == "unsupported_media_type"
    assert ctype in r.json()["error"]["message"]


@pytest.mark.parametrize("ctype", UNDECLARED + DECLARED)
def test_json_sent_to_the_raw_upload_is_a_415_about_the_body_not_the_image(client, ctype):
    body = json_bytes({"url": "https://example.com/a.png"}, b"\n")

    r = send(client, "PUT", "/v1/assets/a.png", body, ctype)

    err = error(r, 415)
    assert err["code"] == "unsupported_media_type"
    assert "POST /v1/assets" in err["message"] and "JPEG" not in err["message"]
    assert client.get("/v1/assets/a.png", headers=AUTH).status_code == 404


@pytest.mark.parametrize("ctype", [*UNDECLARED, "image/png", "application/octet-stream"])
@pytest.mark.parametrize("method", ["PUT", "POST"])
def test_raw_image_bytes_upload_whatever_curl_data_binary_said(client, method, ctype):
    path = "/v1/assets/a.png" if method == "PUT" else "/v1/assets"

    r = send(client, method, path, PNG, ctype)

    assert r.status_code == 201, r.text
    assert r.json()["mime"] == "image/png"


def test_an_image_declared_as_an_image_is_read_as_one_even_when_it_looks_like_json(client):
    r = send(client, "POST", "/v1/assets", b'{"base64": "AAAA"}', "image/png")

    assert error(r, 415)["code"] == "unsupported_format"


@pytest.mark.parametrize("endpoint", JSON_ENDPOINTS)
def test_malformed_json_declared_as_json_is_still_a_400_naming_the_body(client, endpoint):
    method, path, _, _ = JSON_ENDPOINTS[endpoint]

    r = send(client, method, path, b'{"id": ', "application/json")

    assert error(r, 400)["param"] == "body"


@pytest.mark.parametrize("ctype", UNDECLARED)
def test_an_undeclared_raw_upload_over_the_limit_is_a_413(make_client, ctype):
    client = make_client(max_source_bytes=len(PNG) - 1)

    r = send(client, "POST", "/v1/assets", PNG, ctype)

    assert error(r, 413)["code"] == "source_too_large"
    assert str(len(PNG) - 1) in r.json()["error"]["message"]


@pytest.mark.parametrize("path", ["/v1/purge", "/v1/urls", "/v1/templates/t1"])
@pytest.mark.parametrize("content_type", [None, "application/json", "text/plain"])
def test_an_empty_body_on_a_json_endpoint_is_a_400_naming_the_body(client, path, content_type):
    # Nothing was sent: a malformed request (400), not a wrong media type (415).
    headers = {**AUTH, **({"content-type": content_type} if content_type else {})}
    method = "PUT" if path.startswith("/v1/templates") else "POST"
    r = client.request(method, path, content=b"", headers=headers)
    assert r.status_code == 400, r.text
    assert r.json()["error"]["param"] == "body"


def test_a_json_upload_over_its_limit_is_a_413_naming_the_json_limit(make_client):
    client = make_client(max_source_bytes=3000)  # JSON may carry base64: 4/3 of it, + 4096
    body = b'{"base64": "' + b"A" * 9000 + b'"}'
    r = client.post(
        "/v1/assets", content=body, headers={**AUTH, "content-type": "application/json"}
    )
    assert r.status_code == 413
    assert "the limit is 8096" in r.json()["error"]["message"]
