"""Routing: a 405 lists every method its path takes, nothing ever redirects, and a URL that
misses a segment or has a trailing slash is a JSON error that says what is wrong."""

from __future__ import annotations

import httpx2 as httpx
import pytest
from conftest import AUTH, upload
from conftest import error_body as error
from starlette.routing import Route
from starlette.testclient import TestClient

from server.ops import OPS

# Every route of the app: its template -> an example path, and every method that path takes.
ROUTES = {
    "/t/{template}/{id:anypath}": ("/t/_/photo.jpg", {"GET", "HEAD"}),
    "/t/{rest:anypath}": ("/t/photo.jpg", {"GET", "HEAD"}),
    "/r/{name}": ("/r/x.jpg", {"GET", "HEAD"}),
    "/v1/assets": ("/v1/assets", {"GET", "HEAD", "POST"}),
    # The original's route shares its paths with the asset route: "x/original" is an id too.
    "/v1/assets/{id:anypath}/original": ("/v1/assets/x/original", {"GET", "HEAD", "PUT", "DELETE"}),
    "/v1/assets/{id:anypath}": ("/v1/assets/x.png", {"GET", "HEAD", "PUT", "DELETE"}),
    "/v1/templates": ("/v1/templates", {"GET", "HEAD"}),
    "/v1/templates/{name}": ("/v1/templates/card", {"GET", "HEAD", "PUT", "DELETE"}),
    "/v1/urls": ("/v1/urls", {"POST"}),
    "/v1/purge": ("/v1/purge", {"POST"}),
    "/v1/keys": ("/v1/keys", {"GET", "HEAD", "POST"}),
    "/v1/keys/{id}": ("/v1/keys/abcdefghijkl", {"GET", "HEAD", "PATCH", "DELETE"}),
    "/healthz": ("/healthz", {"GET", "HEAD"}),
    "/readyz": ("/readyz", {"GET", "HEAD"}),
    "/metrics": ("/metrics", {"GET", "HEAD"}),
    "/v1/openapi.json": ("/v1/openapi.json", {"GET", "HEAD"}),
    "/docs": ("/docs", {"GET", "HEAD"}),
    "/docs/static/{name}": ("/docs/static/swagger-ui.css", {"GET", "HEAD"}),
    "/playground": ("/playground", {"GET", "HEAD"}),
    "/playground/static/{name}": ("/playground/static/playground.js", {"GET", "HEAD"}),
    "/v1/image/upload": ("/v1/image/upload", {"POST"}),
    "/v1/image/get/{id:anypath}": ("/v1/image/get/x.jpg", {"GET", "HEAD"}),
    "/v1/image/list": ("/v1/image/list", {"GET", "HEAD"}),
    "/v1/image/delete/{id:anypath}": ("/v1/image/delete/x.jpg", {"DELETE"}),
    "/v1/image/deliver_url": ("/v1/image/deliver_url", {"POST"}),
    "/v1/image/signed_url": ("/v1/image/signed_url", {"POST"}),
    "/v1/image/transformation/create": ("/v1/image/transformation/create", {"POST"}),
    "/v1/image/transformation/list": ("/v1/image/transformation/list", {"GET", "HEAD"}),
    "/v1/image/process": ("/v1/image/process", {"POST"}),
    "/v1/image/metadata": ("/v1/image/metadata", {"POST"}),
    **{f"/v1/image/{op}": (f"/v1/image/{op}", {"POST"}) for op in OPS},
    "/v1/image/batch/submit": ("/v1/image/batch/submit", {"POST"}),
    "/v1/image/batch/status/{id}": ("/v1/image/batch/status/job_abc", {"GET", "HEAD"}),
    "/v1/image/batch/cancel/{id}": ("/v1/image/batch/cancel/job_abc", {"POST"}),
    "/v1/image/moderate": ("/v1/image/moderate", {"POST"}),
    "/v1/image/ocr": ("/v1/image/ocr", {"POST"}),
    "/api/tasks/visual/correction": ("/api/tasks/visual/correction", {"POST"}),
    "/api/tasks/visual/correction/{task_id}": ("/api/tasks/visual/correction/x", {"GET", "HEAD"}),
    "/api/v1/compress": ("/api/v1/compress", {"POST"}),
    "/api/image/editing/image-cropping": ("/api/image/editing/image-cropping", {"POST"}),
    "/image-processing": ("/image-processing", {"POST"}),
    "/api/v1/image-processing/{operation}": ("/api/v1/image-processing/resize", {"POST"}),
    # Later issues' endpoints answer 501 to GET and POST alike (vision).
    **{f"/v1/image/{path}": (f"/v1/image/{path}", {"GET", "HEAD", "POST"}) for path in ("tag",)},
}
METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")
HOSTILE = {**AUTH, "Host": "evil.example"}


def test_the_table_here_names_every_route_of_the_app(client):
    assert {r.path for r in client.app.routes if isinstance(r, Route)} == set(ROUTES)


# Where a drop-in answers (SPEC §10): its envelope's code and its HTTP status for a 405.
DROP_IN_405 = {
    "/api/tasks/visual/correction": (lambda body: body["data"]["code"], 405),
    "/api/v1/compress": (lambda body: body["error"], 400),  # seed 001's table has no 405
    "/api/image/editing/image-cropping": (lambda body: body["error_detail"]["code"], 405),
    "/image-processing": (lambda body: body["error"], 405),
    "/api/v1/image-processing": (lambda body: body["error"], 405),
}


@pytest.mark.parametrize("template", ROUTES)
def test_every_method_a_path_does_not_take_is_a_405_listing_all_it_does(client, template):
    path, allowed = ROUTES[template]
    prefix = next((p for p in DROP_IN_405 if path.startswith(p)), None)
    code_of, status = DROP_IN_405[prefix] if prefix else (lambda body: body["code"], 405)
    for method in sorted(set(METHODS) - allowed):
        r = client.request(method, path, headers=AUTH)

        if method != "HEAD":  # a HEAD answer has the headers only
            body = r.json() if prefix else error(r, 405)
            assert code_of(body) == "method_not_allowed", method
        assert (r.status_code, r.headers["cache-control"]) == (status, "no-store")
        assert set(r.headers["allow"].split(", ")) == allowed, (method, r.headers["allow"])


def test_the_allow_list_is_in_a_stable_order(client):
    r = client.patch("/v1/assets/x.png", headers=AUTH)

    assert r.headers["allow"] == "GET, HEAD, PUT, DELETE"


def test_the_methods_the_table_lists_do_work_on_a_shared_path(client):
    # The other side of the 405 table: each method Allow names is answered by its route.
    upload(client, "x.png", "alpha.png")

    assert client.get("/v1/assets/x.png", headers=AUTH).status_code == 200
    assert client.head("/v1/assets/x.png", headers=AUTH).status_code == 200
    assert client.get("/v1/assets/x.png/original", headers=AUTH).status_code == 200
    assert client.delete("/v1/assets/x.png", headers=AUTH).status_code == 204


PATHS_THAT_ONCE_REDIRECTED = [
    "/t/photo.jpg?w=100",
    "/t/photo.jpg",
    "/healthz/",
    "/readyz/",
    "/metrics/",
    "/v1/templates/",
    "/v1/assets/",
    "/v1/urls/",
    "/v1/purge/",
    "/t/_/photo.jpg/",
    "/v1/templates/card/",
    "/v1/assets/x.png/",
    "/",
    "/t",
    "/t/",
    "/v1",
    "/v1/",
]


@pytest.mark.parametrize("path", PATHS_THAT_ONCE_REDIRECTED)
@pytest.mark.parametrize("method", ["GET", "HEAD", "POST"])
def test_no_path_ever_redirects_nor_echoes_a_hostile_host(client, path, method):
    r = client.request(method, path, headers=HOSTILE, follow_redirects=False)

    assert r.status_code >= 400, (r.status_code, r.headers.get("location"))
    assert "location" not in r.headers
    assert "evil.example" not in r.text
    assert r.headers["content-type"] == "application/json"
    assert r.headers["cache-control"] == "no-store"


@pytest.mark.parametrize("path", ["/t/photo.jpg?w=100", "/t/photo.jpg", "/t/", "/t//photo.jpg"])
def test_a_delivery_url_without_its_template_segment_is_a_400_saying_so(client, path):
    body = error(client.get(path, follow_redirects=False), 400)

    assert body["code"] == "invalid_param" and body["param"] == "template"
    assert "/t/{template}/{id}" in body["message"]
    assert "template segment is missing" in body["message"]
    assert "[a-z0-9][a-z0-9_-]{0,63}" in body["message"]


def test_the_missing_template_message_shows_the_url_with_the_segment_put_back(client):
    body = error(client.get("/t/photo.jpg?w=100"), 400)

    assert "/t/_/photo.jpg" in body["message"]


@pytest.mark.parametrize(
    ("path", "without"),
    [("/healthz/", "/healthz"), ("/v1/templates/", "/v1/templates"), ("/v1/urls//", "/v1/urls")],
)
def test_a_trailing_slash_is_a_404_naming_the_path_and_the_one_without(client, path, without):
    body = error(client.get(path, headers=AUTH, follow_redirects=False), 404)

    assert body["code"] == "not_found"
    assert repr(path) in body["message"]
    assert f"did you mean {without!r}" in body["message"]


def test_an_unknown_path_is_a_plain_404_with_no_suggestion(client):
    body = error(client.get("/nothing/here/"), 404)

    assert "did you mean" not in body["message"]


def test_a_405_is_counted_under_its_route_template(client: TestClient):
    client.patch("/v1/templates/card", headers=AUTH)
    scrape = client.get("/metrics").text

    assert 'route="/v1/templates/{name}",status="405"' in scrape


def test_a_real_server_answers_a_hostile_host_without_a_location(live_server):
    with httpx.Client(base_url=live_server, follow_redirects=False) as http:
        for path in ("/healthz/", "/t/photo.jpg?w=100", "/v1/templates/"):
            r = http.get(path, headers={**AUTH, "Host": "evil.example"})

            assert r.status_code in (400, 404), (path, r.status_code)
            assert "location" not in r.headers
            assert "evil.example" not in r.text


@pytest.mark.parametrize("prefix", DROP_IN_405)
def test_an_unknown_path_under_a_drop_in_is_a_not_found_in_its_envelope(client, prefix):
    r = client.get(f"{prefix}/no/such/thing", headers=AUTH)

    code_of, _ = DROP_IN_405[prefix]
    assert code_of(r.json()) == "not_found"
    # Seed 001's HTTP table has no 404: it folds every client error onto 400.
    assert r.status_code == (400 if prefix == "/api/v1/compress" else 404)
