"""The batch API (SPEC §8, seed 002) over the real app, on real images and real libvips:
submit, poll to the end, per-item results that are real images, validation naming the
item's field, cancel, owner isolation, idempotency."""

from __future__ import annotations

import base64
from typing import Any

import httpx2 as httpx
import pytest
import pyvips
from conftest import AUTH, IMAGES, error_body, wait_until
from starlette.testclient import TestClient

PHOTO = base64.b64encode((IMAGES / "photo.jpg").read_bytes()).decode()  # 800 x 600
ALPHA = base64.b64encode((IMAGES / "alpha.png").read_bytes()).decode()


def submit(
    client: TestClient, body: dict[str, Any], headers: dict[str, str] = AUTH
) -> httpx.Response:
    return client.post("/v1/image/batch/submit", json=body, headers=headers)


def status(client: TestClient, job_id: str, headers: dict[str, str] = AUTH) -> dict[str, Any]:
    r = client.get(f"/v1/image/batch/status/{job_id}", headers=headers)
    assert r.status_code == 200, r.text
    answer: dict[str, Any] = r.json()
    return answer


def ended(client: TestClient, job_id: str, seconds: float = 60) -> dict[str, Any]:
    seen: dict[str, Any] = {}

    def done() -> bool:
        seen.update(status(client, job_id))
        return seen["status"] in ("completed", "cancelled") and "finished_at" in seen

    wait_until(done, seconds)
    return seen


def resize(width: int, image: object = None) -> dict[str, Any]:
    return {
        "image": image or {"base64": PHOTO},
        "ops": [{"op": "resize", "params": {"width": width}}],
    }


def key(client: TestClient, **fields: Any) -> dict[str, str]:
    r = client.post("/v1/keys", json={"name": "app", **fields}, headers=AUTH)
    assert r.status_code == 201, r.text
    return {"Authorization": f"Bearer {r.json()['key']}"}


def test_a_batch_runs_every_item_and_each_result_is_the_image_its_steps_make(
    client: TestClient,
) -> None:
    body = {
        "items": [
            resize(200),
            {"image": {"base64": ALPHA}, "ops": [{"op": "convert", "params": {"format": "webp"}}]},
            {"input": {"base64": PHOTO}, "ops": [{"op": "rotate", "params": {"degrees": 90}}]},
        ]
    }
    r = submit(client, body)
    assert r.status_code == 202, r.text
    ticket = r.json()
    assert set(ticket) == {"id", "status", "count", "created_at"}
    assert (ticket["status"], ticket["count"]) == ("queued", 3)
    assert r.headers["location"] == f"/v1/image/batch/status/{ticket['id']}"

    final = ended(client, ticket["id"])
    assert (final["status"], final["done"], final["failed"]) == ("completed", 3, 0)
    sizes = []
    for i, result in enumerate(final["results"]):
        assert (result["index"], result["status"]) == (i, "succeeded")
        served = client.get(result["image_url"])
        assert served.status_code == 200
        assert served.headers["content-type"] == result["mime"]
        image = pyvips.Image.new_from_buffer(served.content, "")
        assert (image.width, image.height, len(served.content)) == (
            result["width"],
            result["height"],
            result["bytes"],
        )
        sizes.append((image.width, image.height))
    assert sizes[0] == (200, 150)
    assert final["results"][1]["mime"] == "image/webp"
    assert sizes[2] == (600, 800)


def test_a_batch_item_renders_what_the_same_process_request_renders(client: TestClient) -> None:
    job = submit(client, {"items": [resize(123)]}).json()
    item = ended(client, job["id"])["results"][0]
    direct = client.post("/v1/image/process", json=resize(123), headers=AUTH).json()
    # One engine: the same input and steps are one result, rendered once.
    assert item["image_url"].split("?")[0] == direct["image_url"].split("?")[0]


def test_an_item_that_fails_when_run_fails_alone_with_the_processing_error_code(
    client: TestClient,
) -> None:
    body = {"items": [resize(100), resize(100, {"id": "no-such-asset"})]}
    final = ended(client, submit(client, body).json()["id"])
    assert (final["status"], final["done"], final["failed"]) == ("completed", 1, 1)
    failed = final["results"][1]
    assert failed["status"] == "failed"
    assert failed["error"]["code"] == "asset_not_found"
    assert "image_url" not in failed


@pytest.mark.parametrize(
    ("item", "param", "code"),
    [
        ({"image": {"base64": PHOTO}, "ops": [{"op": "resize", "params": {"width": -1}}]},
         "items[3].ops[0].params.width", "invalid_op"),
        ({"image": {"base64": PHOTO}, "ops": [{"op": "spin"}]}, "items[3].ops[0].op", "invalid_op"),
        ({"image": {"base64": "@@@"}}, "items[3].image.base64", "invalid_param"),
        ({"ops": []}, "items[3].image", "invalid_param"),
        ({"image": {"base64": PHOTO}, "extra": 1}, "items[3].extra", "invalid_param"),
        ({"image": {"base64": PHOTO}, "output": {"return": "base64"}},
         "items[3].output.return", "invalid_param"),
        ("photo.jpg", "items[3]", "invalid_param"),
    ],
)  # fmt: skip
def test_a_bad_item_refuses_the_whole_batch_naming_its_field(
    client: TestClient, item: object, param: str, code: str
) -> None:
    body = {"items": [resize(10), resize(20), resize(30), item]}
    error = error_body(submit(client, body), 400)
    assert (error["param"], error["code"]) == (param, code)
    assert error["message"]


def test_batch_bodies_that_are_not_a_batch_are_400_naming_the_field(client: TestClient) -> None:
    for body, param in [
        ({}, "items"),
        ({"items": []}, "items"),
        ({"items": {"image": "x"}}, "items"),
        ({"items": [resize(10)], "webhook_url": 5}, "webhook_url"),
        ({"items": [resize(10)], "color": "red"}, "color"),
    ]:
        assert error_body(submit(client, body), 400)["param"] == param, body


def test_more_items_than_the_limit_is_400_too_many_items(make_client: Any) -> None:
    client = make_client(batch_max_items=3)
    error = error_body(submit(client, {"items": [resize(10)] * 4}), 400)
    assert (error["code"], error["param"]) == ("too_many_items", "items")
    assert submit(client, {"items": [resize(10)] * 3}).status_code == 202


def test_an_unknown_job_is_404_and_so_is_another_keys_job(client: TestClient) -> None:
    mine, theirs = key(client), key(client)
    job = submit(client, {"items": [resize(10)]}, mine).json()
    assert status(client, job["id"], mine)["id"] == job["id"]
    for path in (f"status/{job['id']}", "status/job_nope", "status/nope"):
        r = client.get(f"/v1/image/batch/{path}", headers=theirs)
        assert error_body(r, 404)["code"] == "job_not_found"
    r = client.post(f"/v1/image/batch/cancel/{job['id']}", headers=theirs)
    assert error_body(r, 404)["code"] == "job_not_found"
    # The admin token is an owner of its own too: it does not see a key's jobs.
    r = client.get(f"/v1/image/batch/status/{job['id']}", headers=AUTH)
    assert r.status_code == 404


def test_the_batch_api_needs_a_key_with_the_process_scope(client: TestClient) -> None:
    assert error_body(submit(client, {"items": [resize(10)]}, {}), 401)
    narrow = key(client, scopes=["image.metadata"])
    assert error_body(submit(client, {"items": [resize(10)]}, narrow), 403)["code"] == (
        "scope_denied"
    )


def test_an_idempotency_key_gives_the_same_job_back(client: TestClient) -> None:
    body = {"items": [resize(10)], "idempotency_key": "batch-1"}
    first, second = submit(client, body), submit(client, body)
    assert (first.status_code, second.status_code) == (202, 202)
    assert first.json() == second.json()
    assert second.headers["idempotent-replayed"] == "true"
    other = submit(client, {**body, "items": [resize(11)]})
    assert error_body(other, 422)["code"] == "idempotency_key_reused"


def test_a_batch_is_one_request_against_the_rate_limit(client: TestClient) -> None:
    limited = key(client, rate_per_s=0.001, burst=2)
    assert submit(client, {"items": [resize(10)] * 5}, limited).status_code == 202
    assert submit(client, {"items": [resize(10)] * 5}, limited).status_code == 202
    assert error_body(submit(client, {"items": [resize(10)]}, limited), 429)


def test_a_multipart_batch_is_refused_for_json(client: TestClient) -> None:
    r = client.post(
        "/v1/image/batch/submit", data={"items": "[]"}, files={"image": b"x"}, headers=AUTH
    )
    assert error_body(r, 400)["param"] == "body"


def test_a_batch_spends_one_unit_of_the_daily_quota_per_item(client: TestClient) -> None:
    # As many requests to /v1/image/process would: a batch is no way around the quota.
    limited = key(client, daily_quota=10)
    first = submit(client, {"items": [resize(10 + i) for i in range(7)]}, limited)
    assert first.status_code == 202 and first.headers["RateLimit-Remaining"] == "3"
    over = submit(client, {"items": [resize(20 + i) for i in range(4)]}, limited)
    body = error_body(over, 429)
    assert body["code"] == "quota_exceeded" and "4 wanted" in body["message"]
    # The refusal spent nothing: the last 3 units go to a batch of 3.
    assert submit(client, {"items": [resize(30 + i) for i in range(3)]}, limited).status_code == 202
