"""Idempotency keys (SPEC §6): replay, 422 on reuse, 409 while in flight, release on
failure, expiry of a dead process's mark; through the real app and a probe route that runs
under `idempotent` (tests/keyed.py)."""

from __future__ import annotations

import asyncio
import hashlib
import threading
import uuid
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import httpx2 as httpx
import pytest
from conftest import AUTH, error_body, serving_in_thread, wait_until
from keyed import create_app
from starlette.testclient import TestClient

from server.settings import Settings
from server.state.local import SqliteState


@pytest.fixture
def keyed(settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(settings)) as client:
        yield client


def call(client: Any, body: dict[str, Any], headers: dict[str, str] | None = None) -> Any:
    return client.post("/idem", json=body, headers={**AUTH, **(headers or {})})


def tag() -> str:
    return uuid.uuid4().hex


def test_without_a_key_every_request_runs(keyed):
    t = tag()
    assert [call(keyed, {"do": "ok", "tag": t}).json()["run"] for _ in range(3)] == [1, 2, 3]


@pytest.mark.parametrize("where", ["header", "field"])
def test_the_same_key_and_request_replays_the_first_answer(keyed, where):
    t = tag()
    body = {"do": "ok", "tag": t}
    headers = {"Idempotency-Key": "k-1"} if where == "header" else {}
    if where == "field":
        body["idempotency_key"] = "k-1"
    first = call(keyed, body, headers)
    again = call(keyed, body, headers)
    assert first.status_code == again.status_code == 201
    assert again.content == first.content and again.json()["run"] == 1
    assert again.headers["idempotent-replayed"] == "true"
    assert "idempotent-replayed" not in first.headers
    assert again.headers["content-type"] == "application/json"


def test_the_same_key_with_another_request_is_a_422(keyed):
    t = tag()
    call(keyed, {"do": "ok", "tag": t}, {"Idempotency-Key": "k-2"})
    r = call(keyed, {"do": "ok", "tag": t, "width": 5}, {"Idempotency-Key": "k-2"})
    body = error_body(r, 422)
    assert body["code"] == "idempotency_key_reused" and body["param"] == "idempotency_key"


def test_keys_are_per_caller_and_endpoint(keyed):
    t = tag()
    call(keyed, {"do": "ok", "tag": t}, {"Idempotency-Key": "shared"})
    made = keyed.post("/v1/keys", json={"name": "k"}, headers=AUTH).json()
    as_key = {"Authorization": f"Bearer {made['key']}", "Idempotency-Key": "shared"}
    r = keyed.post("/idem", json={"do": "ok", "tag": t}, headers=as_key)
    assert r.status_code == 201 and r.json()["run"] == 2  # another caller: its own record


def test_a_failed_run_releases_the_key_so_a_retry_runs(keyed):
    t = tag()
    headers = {"Idempotency-Key": "k-3"}
    r = call(keyed, {"do": "fail", "tag": t}, headers)
    assert error_body(r, 500)["code"] == "internal"
    r = call(keyed, {"do": "fail", "tag": t}, headers)
    assert r.status_code == 500  # ran again, not replayed
    assert "idempotent-replayed" not in r.headers


def test_a_4xx_answer_is_kept_and_replayed(keyed):
    t = tag()
    headers = {"Idempotency-Key": "k-4"}
    first = call(keyed, {"do": "bad", "tag": t}, headers)
    assert error_body(first, 400)["param"] == "width"
    again = call(keyed, {"do": "bad", "tag": t}, headers)
    assert again.status_code == 400 and again.json() == first.json()
    assert again.headers["idempotent-replayed"] == "true"


@pytest.mark.parametrize("key", ["", "x" * 256, "caf\u00e9", "a\tb", "a\x7fb"])
def test_a_malformed_idempotency_key_is_a_400_naming_it(keyed, key):
    r = call(keyed, {"do": "ok", "tag": tag(), "idempotency_key": key})
    assert error_body(r, 400)["param"] == "idempotency_key"


def test_a_header_and_a_field_that_differ_are_a_400(keyed):
    r = call(keyed, {"do": "ok", "idempotency_key": "a"}, {"Idempotency-Key": "b"})
    assert error_body(r, 400)["param"] == "idempotency_key"


def test_an_answer_over_the_size_cap_runs_again_but_still_refuses_another_request(settings):
    with TestClient(create_app(replace(settings, idempotency_max_bytes=1000))) as client:
        t = tag()
        headers = {"Idempotency-Key": "k-5"}
        assert call(client, {"do": "big", "tag": t}, headers).json()["run"] == 1
        again = call(client, {"do": "big", "tag": t}, headers)
        assert again.json()["run"] == 2 and "idempotent-replayed" not in again.headers
        other = call(client, {"do": "ok", "tag": t}, headers)
        assert error_body(other, 422)["code"] == "idempotency_key_reused"


def test_a_mark_left_by_a_killed_process_expires(keyed, settings):
    t = tag()
    body = {"do": "ok", "tag": t}
    # Another process claimed this key (the probe's fingerprint, admin's scope) with a short
    # in-flight time, then died without finishing or releasing it.
    state = SqliteState(settings.data_dir / "state.sqlite3", 2.0)
    fingerprint = repr(sorted((k, str(v)) for k, v in body.items())).encode()
    scope = hashlib.sha256(b"admin\0idem\0k-6").hexdigest()
    claim = asyncio.run(state.claim(scope, hashlib.sha256(fingerprint).digest(), 0.3))
    asyncio.run(state.close())
    assert claim.outcome == "run"
    r = call(keyed, body, {"Idempotency-Key": "k-6"})
    assert error_body(r, 409)["code"] == "idempotency_in_progress"
    assert r.headers["retry-after"] == "1"

    def runs_now() -> bool:
        return call(keyed, body, {"Idempotency-Key": "k-6"}).status_code == 201

    wait_until(runs_now, seconds=5)


@pytest.fixture
def served(settings: Settings) -> Iterator[str]:
    with serving_in_thread(create_app(settings)) as base:
        yield base


def test_while_the_first_runs_the_same_key_is_a_409_with_retry_after(served):
    t, gate = tag(), tag()
    body = {"do": "wait", "tag": t, "gate": gate}
    headers = {**AUTH, "Idempotency-Key": "k-7"}
    with httpx.Client(base_url=served, timeout=30) as client:
        first: dict[str, httpx.Response] = {}
        runner = threading.Thread(
            target=lambda: first.update(r=client.post("/idem", json=body, headers=headers))
        )
        runner.start()

        # Only once the first is running: sent sooner, the probe would be the first itself.
        wait_until(lambda: client.get(f"/runs/{t}").json()["runs"] == 1)
        r = client.post("/idem", json=body, headers=headers)
        assert error_body(r, 409)["code"] == "idempotency_in_progress"
        assert int(r.headers["retry-after"]) >= 1
        client.post(f"/gate/{gate}", headers=AUTH)
        runner.join(timeout=30)
        assert first["r"].status_code == 201
        again = client.post("/idem", json=body, headers=headers)
        assert again.headers["idempotent-replayed"] == "true"
        assert again.json() == first["r"].json()
