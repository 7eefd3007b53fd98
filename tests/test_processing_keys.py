"""The processing API with real API keys on its real routes: every way of sending a key,
scopes, the asset prefix, rate limits with their headers, quotas, and idempotency; and the
new input formats and a failing source through the same endpoints."""

from __future__ import annotations

import base64
import socket
from typing import Any

import pytest
from conftest import AUTH, IMAGES, decode, error_body, upload
from inputs import photo_as
from starlette.testclient import TestClient

P3 = base64.b64encode((IMAGES / "p3.jpg").read_bytes()).decode()  # 400 x 300
RESIZE = {"image": {"base64": P3}, "width": 40}


def key(client: TestClient, **fields: Any) -> str:
    r = client.post("/v1/keys", json={"name": "app", **fields}, headers=AUTH)
    assert r.status_code == 201, r.text
    secret: str = r.json()["key"]
    return secret


def bearer(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}


def test_a_key_works_in_every_place_the_seeds_send_it(client: TestClient) -> None:
    secret = key(client)
    assert client.post("/v1/image/resize", json=RESIZE, headers=bearer(secret)).status_code == 200
    r = client.post("/v1/image/resize", json=RESIZE, headers={"X-API-KEY": secret})
    assert r.status_code == 200
    for name in ("api_key", "appkey"):
        assert client.post(f"/v1/image/resize?{name}={secret}", json=RESIZE).status_code == 200
        assert client.post("/v1/image/resize", json={**RESIZE, name: secret}).status_code == 200
        r = client.post(
            "/v1/image/resize",
            files={"image": ("p.jpg", (IMAGES / "p3.jpg").read_bytes(), "image/jpeg")},
            data={"width": "40", name: secret},
        )
        assert r.status_code == 200, r.text


def test_a_wrong_or_missing_key_is_401_and_says_how_to_send_one(client: TestClient) -> None:
    secret = key(client)
    wrong = secret[:-4] + "AAAA"
    body = error_body(client.post("/v1/image/resize", json=RESIZE, headers=bearer(wrong)), 401)
    assert body["code"] == "unauthorized" and secret not in body["message"]
    assert error_body(client.post("/v1/image/resize", json=RESIZE), 401)["code"] == "unauthorized"


def test_a_key_without_the_scope_is_403_scope_denied(client: TestClient) -> None:
    secret = key(client, scopes=["image.metadata"])
    r = client.post("/v1/image/resize", json=RESIZE, headers=bearer(secret))
    assert error_body(r, 403)["code"] == "scope_denied"
    r = client.post("/v1/image/metadata", json={"image": {"base64": P3}}, headers=bearer(secret))
    assert r.status_code == 200 and r.json()["width"] == 400


def test_a_disabled_key_is_403_and_every_answer_carries_ratelimit_headers(
    client: TestClient,
) -> None:
    secret = key(client, burst=5, rate_per_s=1)
    ok = client.post("/v1/image/resize", json=RESIZE, headers=bearer(secret))
    bad = client.post("/v1/image/resize", json={"image": 1}, headers=bearer(secret))
    for r in (ok, bad):
        assert {"ratelimit-limit", "ratelimit-remaining", "ratelimit-reset"} <= set(r.headers)
    assert int(bad.headers["ratelimit-remaining"]) < int(ok.headers["ratelimit-remaining"])
    key_id = secret.split("_")[1]
    client.patch(f"/v1/keys/{key_id}", json={"state": "disabled"}, headers=AUTH)
    r = client.post("/v1/image/resize", json=RESIZE, headers=bearer(secret))
    assert error_body(r, 403)["code"] == "key_disabled"


def test_past_the_burst_a_key_gets_429_with_retry_after_and_no_render(client: TestClient) -> None:
    secret = key(client, burst=3, rate_per_s=0.01)
    answers = [
        client.post("/v1/image/resize", json=RESIZE, headers=bearer(secret)) for _ in range(5)
    ]
    assert [r.status_code for r in answers] == [200, 200, 200, 429, 429]
    refused = error_body(answers[3], 429)
    assert refused["code"] == "rate_limited" and int(answers[3].headers["retry-after"]) >= 1


def test_a_daily_quota_is_429_quota_exceeded(client: TestClient) -> None:
    secret = key(client, daily_quota=2, burst=100, rate_per_s=100)
    codes = [
        client.post("/v1/image/resize", json=RESIZE, headers=bearer(secret)).status_code
        for _ in range(3)
    ]
    assert codes == [200, 200, 429]
    r = client.post("/v1/image/resize", json=RESIZE, headers=bearer(secret))
    assert error_body(r, 429)["code"] == "quota_exceeded"


def test_a_keys_prefix_confines_the_images_it_can_name(client: TestClient) -> None:
    upload(client, "acme/p3.jpg", "p3.jpg")
    upload(client, "other/p3.jpg", "p3.jpg")
    secret = key(client, prefix="acme/")
    mine = {"image": {"id": "acme/p3.jpg"}, "width": 30}
    assert client.post("/v1/image/resize", json=mine, headers=bearer(secret)).status_code == 200
    theirs = {"image": "other/p3.jpg", "width": 30}
    r = client.post("/v1/image/resize", json=theirs, headers=bearer(secret))
    assert (error_body(r, 404)["code"], r.json()["error"]["param"]) == (
        "asset_not_found",
        "image.id",
    )
    mark = {"op": "watermark", "params": {"watermark_image": {"id": "other/p3.jpg"}}}
    r = client.post(
        "/v1/image/process",
        json={"image": {"id": "acme/p3.jpg"}, "ops": [mark]},
        headers=bearer(secret),
    )
    assert error_body(r, 404)["param"] == "ops[0].params.watermark_image.id"
    uploaded = client.post("/v1/image/upload", json={"file": P3}, headers=bearer(secret))
    assert uploaded.status_code == 200 and uploaded.json()["id"].startswith("acme/")
    listed = client.get("/v1/image/list", headers=bearer(secret)).json()["items"]
    assert {item["id"] for item in listed} == {"acme/p3.jpg", uploaded.json()["id"]}
    r = client.get("/v1/image/get/other/p3.jpg", headers=bearer(secret))
    assert error_body(r, 404)["code"] == "asset_not_found"


def test_an_idempotency_key_replays_refuses_a_different_request_and_is_per_key(
    client: TestClient,
) -> None:
    secret, other = key(client), key(client)
    headers = {**bearer(secret), "Idempotency-Key": "job-1"}
    first = client.post("/v1/image/resize", json=RESIZE, headers=headers)
    again = client.post("/v1/image/resize", json=RESIZE, headers=headers)
    assert again.headers.get("idempotent-replayed") == "true" and again.json() == first.json()
    changed = client.post("/v1/image/resize", json={**RESIZE, "width": 41}, headers=headers)
    assert error_body(changed, 422)["code"] == "idempotency_key_reused"
    # The same key string under another API key is another record.
    elsewhere = {**bearer(other), "Idempotency-Key": "job-1"}
    r = client.post("/v1/image/resize", json={**RESIZE, "width": 41}, headers=elsewhere)
    assert r.status_code == 200 and "idempotent-replayed" not in r.headers
    field = client.post(
        "/v1/image/resize", json={**RESIZE, "idempotency_key": "job-2"}, headers=bearer(secret)
    )
    replay = client.post(
        "/v1/image/resize", json={**RESIZE, "idempotency_key": "job-2"}, headers=bearer(secret)
    )
    assert field.status_code == 200 and replay.headers.get("idempotent-replayed") == "true"


@pytest.mark.parametrize(
    ("name", "data"),
    [
        ("heic", (IMAGES / "orient6.heic").read_bytes()),
        ("bmp", photo_as("BMP")),
        ("tiff", photo_as("TIFF", compression="tiff_lzw")),
    ],
)
def test_the_new_input_formats_go_through_the_processing_api(
    client: TestClient, name: str, data: bytes
) -> None:
    body = {"image": {"base64": base64.b64encode(data).decode()}, "width": 64, "return": "base64"}
    r = client.post("/v1/image/resize", json=body, headers=AUTH)
    assert r.status_code == 200, (name, r.text)
    image = decode(base64.b64decode(r.json()["base64"]))
    assert image.width == 64 and r.json()["mime"] in ("image/jpeg", "image/png")
    meta = client.post("/v1/image/metadata", json={"image": body["image"]}, headers=AUTH)
    assert meta.status_code == 200 and meta.json()["width"] > 0


def test_a_source_that_refuses_connections_is_503_with_retry_after(make_client: Any) -> None:
    client = make_client(allow_private_sources=True)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed when the block ends: nothing listens there
    r = client.post(
        "/v1/image/resize",
        json={"image": {"url": f"http://127.0.0.1:{port}/x.jpg"}, "width": 10},
        headers=AUTH,
    )
    body = error_body(r, 503)
    assert (body["code"], body["param"]) == ("source_unavailable", "image.url")
    assert r.headers["retry-after"] == "5"
