"""API keys at the door (SPEC §6 "Keys"): where a key may come from, and every 401, 403 and
429, with RateLimit-* headers on every answer of a keyed request; through the real app, a
probe route calling `authenticate` (tests/keyed.py)."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from conftest import AUTH, TOKEN, client_factory, error_body
from keyed import create_app
from starlette.testclient import TestClient

from server.settings import Settings


@pytest.fixture
def make_keyed(settings: Settings) -> Iterator[Callable[..., TestClient]]:
    yield from client_factory(settings, create_app)


@pytest.fixture
def keyed(make_keyed: Callable[..., TestClient]) -> TestClient:
    return make_keyed()


def new_key(client: TestClient, **fields: Any) -> dict[str, Any]:
    r = client.post("/v1/keys", json={"name": "test", **fields}, headers=AUTH)
    assert r.status_code == 201, r.text
    body: dict[str, Any] = r.json()
    return body


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


@pytest.mark.parametrize(
    "send",
    [
        lambda c, k: c.get("/probe/image.process", headers={"Authorization": f"Bearer {k}"}),
        lambda c, k: c.get("/probe/image.process", headers={"authorization": f"bearer {k}"}),
        lambda c, k: c.get("/probe/image.process", headers={"X-API-KEY": k}),
        lambda c, k: c.get("/probe/image.process", params={"api_key": k}),
        lambda c, k: c.get("/probe/image.process", params={"appkey": k}),
        lambda c, k: c.post("/probe/image.process", json={"api_key": k}),
        lambda c, k: c.post("/probe/image.process", json={"appkey": k}),
    ],
    ids=[
        "bearer",
        "bearer-lowercase",
        "x-api-key",
        "api_key-query",
        "appkey-query",
        "api_key-field",
        "appkey-field",
    ],
)
def test_a_key_is_accepted_from_every_place_the_seeds_put_it(keyed, send):
    key = new_key(keyed, prefix="acme/")
    r = send(keyed, key["key"])
    assert r.status_code == 200, r.text
    assert r.json()["key_id"] == key["id"] and r.json()["prefix"] == "acme/"


def test_an_admin_token_is_a_caller_without_a_key_or_limits(keyed):
    for _ in range(30):  # past any default burst
        r = keyed.get("/probe/image.process", headers=AUTH)
        assert r.status_code == 200
    assert r.json() == {"key_id": None, "prefix": "", "pid": r.json()["pid"]}
    assert "ratelimit-limit" not in r.headers


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Basic Zm9vOmJhcg=="}, {"Authorization": "Bearer "}, {"X-API-KEY": ""}],
    ids=["none", "basic", "empty-bearer", "empty-x-api-key"],
)
def test_no_key_is_a_401(keyed, headers):
    body = error_body(keyed.get("/probe/image.process", headers=headers), 401)
    assert body["code"] == "unauthorized"


def test_an_unknown_key_and_a_wrong_secret_get_the_same_401(keyed):
    key = new_key(keyed)
    wrong_secret = key["key"][:-4] + ("aaaa" if not key["key"].endswith("aaaa") else "bbbb")
    unknown_id = "ik_zzzzzzzzzzzz_" + key["key"].split("_", 2)[2]
    answers = []
    for presented in (wrong_secret, unknown_id, "not-a-key-at-all", "x" * 5000):
        r = keyed.get("/probe/image.process", headers=bearer(presented))
        answers.append(error_body(r, 401))
        assert "ratelimit-limit" not in r.headers
    assert all(a == answers[0] for a in answers)
    assert answers[0]["code"] == "unauthorized"


def test_a_disabled_key_is_a_403_with_its_limit_headers_and_works_again_when_enabled(keyed):
    key = new_key(keyed, burst=5)
    keyed.patch(f"/v1/keys/{key['id']}", json={"state": "disabled"}, headers=AUTH)
    r = keyed.get("/probe/image.process", headers=bearer(key["key"]))
    assert error_body(r, 403)["code"] == "key_disabled"
    assert r.headers["ratelimit-limit"] == "5" and r.headers["ratelimit-remaining"] == "5"
    keyed.patch(f"/v1/keys/{key['id']}", json={"state": "active"}, headers=AUTH)
    assert keyed.get("/probe/image.process", headers=bearer(key["key"])).status_code == 200


def test_an_expired_key_is_a_403_key_expired(keyed):
    key = new_key(keyed, expires_at=int(time.time()) - 1)
    assert key["state"] == "expired"
    r = keyed.get("/probe/image.process", headers=bearer(key["key"]))
    assert error_body(r, 403)["code"] == "key_expired"
    assert "ratelimit-remaining" in r.headers


def test_a_key_without_the_scope_is_a_403_scope_denied_and_spends_nothing(keyed):
    key = new_key(keyed, scopes=["image.read"], burst=3, rate_per_s=0.001)
    for _ in range(5):
        r = keyed.get("/probe/image.process", headers=bearer(key["key"]))
        assert error_body(r, 403)["code"] == "scope_denied"
    r = keyed.get("/probe/image.read", headers=bearer(key["key"]))
    assert r.status_code == 200 and r.headers["ratelimit-remaining"] == "2"


def test_past_the_burst_a_key_gets_429_rate_limited_with_retry_after(keyed):
    key = new_key(keyed, rate_per_s=0.01, burst=3)
    remaining = []
    for _ in range(3):
        r = keyed.get("/probe/image.process", headers=bearer(key["key"]))
        assert r.status_code == 200
        remaining.append(r.headers["ratelimit-remaining"])
        assert r.headers["ratelimit-limit"] == "3"
    assert remaining == ["2", "1", "0"]
    r = keyed.get("/probe/image.process", headers=bearer(key["key"]))
    assert error_body(r, 429)["code"] == "rate_limited"
    # One request per 100 s: the next is 100 s away.
    assert 99 <= int(r.headers["retry-after"]) <= 100
    assert r.headers["ratelimit-remaining"] == "0"
    assert int(r.headers["ratelimit-reset"]) == int(r.headers["retry-after"])


def test_a_spent_daily_quota_is_a_429_quota_exceeded_until_midnight_utc(keyed):
    key = new_key(keyed, rate_per_s=1000, burst=1000, daily_quota=4)
    seen = []
    for _ in range(4):
        r = keyed.get("/probe/image.process", headers=bearer(key["key"]))
        assert r.status_code == 200
        seen.append((r.headers["ratelimit-limit"], r.headers["ratelimit-remaining"]))
    # The quota is nearer exhaustion than the burst, so the headers describe it.
    assert seen == [("4", "3"), ("4", "2"), ("4", "1"), ("4", "0")]
    r = keyed.get("/probe/image.process", headers=bearer(key["key"]))
    assert error_body(r, 429)["code"] == "quota_exceeded"
    to_midnight = 86400 - int(time.time()) % 86400
    assert abs(int(r.headers["retry-after"]) - to_midnight) <= 2
    assert r.headers["ratelimit-limit"] == "4" and r.headers["ratelimit-remaining"] == "0"


def test_a_patched_limit_applies_to_the_next_request(keyed):
    key = new_key(keyed, rate_per_s=0.01, burst=1)
    assert keyed.get("/probe/image.process", headers=bearer(key["key"])).status_code == 200
    assert keyed.get("/probe/image.process", headers=bearer(key["key"])).status_code == 429
    keyed.patch(f"/v1/keys/{key['id']}", json={"burst": 3}, headers=AUTH)
    assert keyed.get("/probe/image.process", headers=bearer(key["key"])).status_code == 200


def test_a_deleted_key_is_a_401(keyed):
    key = new_key(keyed)
    assert keyed.delete(f"/v1/keys/{key['id']}", headers=AUTH).status_code == 204
    r = keyed.get("/probe/image.process", headers=bearer(key["key"]))
    assert error_body(r, 401)["code"] == "unauthorized"


def test_a_state_store_that_stays_locked_is_a_503_with_retry_after(make_keyed, settings):
    keyed = make_keyed(state_timeout_s=0.05)
    key = new_key(keyed)
    assert keyed.get("/probe/image.process", headers=bearer(key["key"])).status_code == 200
    # Another process holding the write lock past the timeout (a stuck writer, a backup).
    holder = sqlite3.connect(settings.data_dir / "state.sqlite3", isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        r = keyed.get("/probe/image.process", headers=bearer(key["key"]))
        assert error_body(r, 503)["code"] == "state_unavailable"
        assert r.headers["retry-after"] == "2"
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert keyed.get("/probe/image.process", headers=bearer(key["key"])).status_code == 200


def test_an_unreadable_state_file_is_a_503_not_a_500(make_keyed, settings):
    settings.data_dir.mkdir(parents=True)
    (settings.data_dir / "state.sqlite3").write_bytes(b"this is not a database" * 100)
    keyed = make_keyed()
    key = new_key(keyed)
    r = keyed.get("/probe/image.process", headers=bearer(key["key"]))
    assert error_body(r, 503)["code"] == "state_unavailable"


def test_the_secret_is_never_stored_nor_logged(keyed, settings, caplog):
    caplog.set_level("INFO")
    key = new_key(keyed)
    secret = key["key"].split("_", 2)[2]
    keyed.get("/probe/image.process", params={"api_key": key["key"]})
    keyed.get("/probe/image.process", headers=bearer(key["key"][:-1]))
    stored = [p.read_bytes() for p in settings.data_dir.rglob("*") if p.is_file()]
    assert stored and not any(secret.encode() in data for data in stored)
    server_lines = [r.getMessage() for r in caplog.records if r.name.startswith("imgcdn")]
    assert server_lines and not any(secret in line for line in server_lines)
    listed = (
        keyed.get("/v1/keys", headers=AUTH).text
        + keyed.get(f"/v1/keys/{key['id']}", headers=AUTH).text
    )
    assert secret not in listed and "sha256" not in listed


def test_last_used_at_shows_when_the_key_was_last_charged(keyed):
    key = new_key(keyed)
    assert key["last_used_at"] is None
    keyed.get("/probe/image.process", headers=bearer(key["key"]))
    shown = keyed.get(f"/v1/keys/{key['id']}", headers=AUTH).json()
    assert shown["last_used_at"] is not None and shown["last_used_at"].endswith("Z")


def test_admin_tokens_still_reach_the_admin_api_and_keys_do_not(keyed):
    key = new_key(keyed)
    assert keyed.get("/v1/keys", headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 200
    assert error_body(keyed.get("/v1/keys", headers=bearer(key["key"])), 401)


def test_an_idempotent_request_with_the_state_locked_is_a_503_and_runs_nothing(
    make_keyed, settings
):
    keyed = make_keyed(state_timeout_s=0.05)
    keyed.post("/idem", json={"do": "ok"}, headers=AUTH)  # the state file exists
    holder = sqlite3.connect(settings.data_dir / "state.sqlite3", isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        body = {"do": "ok", "tag": "locked", "idempotency_key": "k"}
        r = keyed.post("/idem", json=body, headers=AUTH)
        assert error_body(r, 503)["code"] == "state_unavailable"
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    r = keyed.post("/idem", json=body, headers=AUTH)
    assert r.status_code == 201 and r.json()["run"] == 1  # the refused one never ran


def test_keys_keep_working_as_last_read_while_storage_is_down(make_keyed, settings):
    keyed = make_keyed(meta_ttl_s=0)
    key = new_key(keyed)
    assert keyed.get("/probe/image.process", headers=bearer(key["key"])).status_code == 200
    docs = settings.data_dir / "docs"
    docs.rename(settings.data_dir / "docs-away")
    docs.write_bytes(b"")  # a file where the folder was: every read of a key fails
    try:
        r = keyed.get("/probe/image.process", headers=bearer(key["key"]))
        assert r.status_code == 200
        unknown = "ik_zzzzzzzzzzzz_" + key["key"].split("_", 2)[2]
        r = keyed.get("/probe/image.process", headers=bearer(unknown))
        assert error_body(r, 503)["code"] == "storage_unavailable"
    finally:
        docs.unlink()
        (settings.data_dir / "docs-away").rename(docs)
