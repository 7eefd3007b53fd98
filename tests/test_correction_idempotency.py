"""Seed 003's POST takes the processing API's Idempotency-Key (server/idempotency.py): the
same key and request answer the first answer again (an async submit: the same task_id and
no second task), the same key with another request is the processing API's 422, in the
seed's envelope. Over the real app, on a real photo."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from conftest import IMAGES, TOKEN, wait_until
from starlette.testclient import TestClient

from server.routes.correction import PATH
from server.settings import Settings

KEY = {"X-API-KEY": TOKEN}
PHOTO = (IMAGES / "vision" / "product.jpg").read_bytes()


def post(client: TestClient, idem: str, data: bytes = PHOTO, **fields: Any) -> Any:
    return client.post(
        PATH,
        data={k: str(v) for k, v in fields.items()},
        files={"image_file": ("in.jpg", data, "image/jpeg")},
        headers={**KEY, "Idempotency-Key": idem},
    )


def tasks_stored(settings: Settings) -> list[Path]:
    return sorted(settings.data_dir.rglob("seed003/*.json"))


def test_the_same_key_and_async_request_answer_the_same_task_id_and_make_one_task(
    client: TestClient, settings: Settings
) -> None:
    first = post(client, "k-async", sync=0, type=3)
    again = post(client, "k-async", sync=0, type=3)
    assert first.status_code == again.status_code == 200, first.text
    assert again.json() == first.json()
    assert again.headers["idempotent-replayed"] == "true"
    assert len(tasks_stored(settings)) == 1
    task = f"{PATH}/{first.json()['data']['task_id']}"
    wait_until(lambda: client.get(task, headers=KEY).json()["data"]["state"] == 1, 60)


def test_the_same_key_and_sync_request_replay_the_first_result(client: TestClient) -> None:
    first = post(client, "k-sync", sync=1, type=3, return_type=1)
    again = post(client, "k-sync", sync=1, type=3, return_type=1)
    assert first.status_code == again.status_code == 200, first.text
    assert again.json()["data"]["image"] == first.json()["data"]["image"]
    assert again.headers["idempotent-replayed"] == "true"


def test_the_same_key_with_another_body_is_a_422_in_the_envelope_and_makes_no_task(
    client: TestClient, settings: Settings
) -> None:
    assert post(client, "k-other", sync=0, type=3).status_code == 200
    for changed in ({"type": 4}, {"data": PHOTO + b"\0"}):
        fields: dict[str, Any] = {"sync": 0, "type": 3, **changed}
        r = post(client, "k-other", **fields)
        assert r.status_code == 422, r.text
        body = r.json()
        assert body["status"] == 422 and body["message"]
        assert body["data"]["code"] == "idempotency_key_reused"
        assert body["data"]["param"] == "idempotency_key"
    assert len(tasks_stored(settings)) == 1


def test_a_request_refused_by_its_checks_holds_no_key_and_answers_in_the_envelope(
    client: TestClient,
) -> None:
    # The fields are checked before the key is claimed, as the processing API does.
    for _ in range(2):
        r = post(client, "k-bad", sync=1, type=9)
        assert r.status_code == 400 and r.json()["data"]["param"] == "type"
    assert post(client, "k-bad", sync=1, type=3).status_code == 200
