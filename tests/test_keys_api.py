"""The keys admin API (SPEC §6 "Keys"): create answers the key once, the rest never; bad
fields are 400s naming the field; lists page like the other admin lists."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from conftest import AUTH, error_body

from server.keyfields import SCOPES


def create(client, **fields: Any) -> dict[str, Any]:
    r = client.post("/v1/keys", json={"name": "acme", **fields}, headers=AUTH)
    assert r.status_code == 201, r.text
    return dict(r.json())


def test_create_answers_the_key_once_with_defaults_and_later_reads_never_show_it(client):
    r = client.post("/v1/keys", json={"name": "acme"}, headers=AUTH)
    assert r.status_code == 201
    key = r.json()
    assert key["key"].startswith(f"ik_{key['id']}_") and len(key["key"]) > 50
    assert r.headers["location"] == f"/v1/keys/{key['id']}"
    assert r.headers["cache-control"] == "no-store"
    assert key["state"] == "active" and key["scopes"] == list(SCOPES)
    assert (key["rate_per_s"], key["burst"], key["daily_quota"]) == (10.0, 20, None)
    assert key["expires_at"] is None and key["prefix"] == "" and key["name"] == "acme"
    shown = client.get(f"/v1/keys/{key['id']}", headers=AUTH).json()
    assert "key" not in shown and shown == {k: v for k, v in key.items() if k != "key"}


def test_the_limits_default_from_the_settings(make_client):
    client = make_client(key_rate_per_s=2.5, key_burst=7, key_daily_quota=1000)
    key = create(client)
    assert (key["rate_per_s"], key["burst"], key["daily_quota"]) == (2.5, 7, 1000)


def test_every_field_is_kept_as_given(client):
    key = create(
        client,
        rate_per_s=0.5,
        burst=3,
        daily_quota=100,
        expires_at="2031-02-03T04:05:06+01:00",
        scopes=["image.read", "image.process"],
        prefix="acme/photos/",
    )
    assert key["expires_at"] == "2031-02-03T03:05:06Z"
    assert key["scopes"] == ["image.process", "image.read"]  # in SCOPES' order
    assert (key["rate_per_s"], key["burst"], key["daily_quota"]) == (0.5, 3, 100)
    assert key["prefix"] == "acme/photos/"


def test_expires_at_takes_unix_seconds_too(client):
    assert create(client, expires_at=1924992000)["expires_at"] == "2031-01-01T00:00:00Z"


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({}, "name"),
        ({"name": ""}, "name"),
        ({"name": "x" * 101}, "name"),
        ({"name": "a\nb"}, "name"),
        ({"name": "a", "colour": "red"}, "colour"),
        ({"name": "a", "rate_per_s": 0}, "rate_per_s"),
        ({"name": "a", "rate_per_s": "10"}, "rate_per_s"),
        ({"name": "a", "rate_per_s": True}, "rate_per_s"),
        ({"name": "a", "burst": 0}, "burst"),
        ({"name": "a", "burst": 2.5}, "burst"),
        ({"name": "a", "daily_quota": -1}, "daily_quota"),
        ({"name": "a", "expires_at": "tomorrow"}, "expires_at"),
        ({"name": "a", "expires_at": "2030-01-01"}, "expires_at"),
        ({"name": "a", "expires_at": "2030-01-01T00:00:00"}, "expires_at"),
        ({"name": "a", "expires_at": -5}, "expires_at"),
        ({"name": "a", "scopes": []}, "scopes"),
        ({"name": "a", "scopes": "image.read"}, "scopes"),
        ({"name": "a", "scopes": ["image.read", "image.fly"]}, "scopes"),
        ({"name": "a", "state": "expired"}, "state"),
        ({"name": "a", "prefix": "acme"}, "prefix"),
        ({"name": "a", "prefix": "../"}, "prefix"),
        ({"name": "a", "prefix": "a//"}, "prefix"),
        ({"name": "a", "prefix": "/"}, "prefix"),
        (["name"], "body"),
    ],
)
def test_a_bad_field_is_a_400_naming_it(client, body, param):
    r = client.post("/v1/keys", json=body, headers=AUTH)
    assert error_body(r, 400)["param"] == param
    assert client.get("/v1/keys", headers=AUTH).json()["items"] == []  # nothing stored


def test_an_unknown_scope_is_named_in_the_message(client):
    r = client.post("/v1/keys", json={"name": "a", "scopes": ["image.fly"]}, headers=AUTH)
    assert "'image.fly'" in error_body(r, 400)["message"]


def test_patch_changes_state_limits_scopes_expiry_and_name_and_keeps_the_rest(client):
    key = create(client, prefix="acme/")
    r = client.patch(
        f"/v1/keys/{key['id']}",
        json={
            "state": "disabled",
            "burst": 9,
            "daily_quota": None,
            "scopes": ["image.read"],
            "expires_at": None,
            "name": "renamed",
        },
        headers=AUTH,
    )
    assert r.status_code == 200
    changed = r.json()
    assert "key" not in changed
    assert changed["state"] == "disabled" and changed["burst"] == 9 and changed["name"] == "renamed"
    assert changed["scopes"] == ["image.read"] and changed["prefix"] == "acme/"
    assert client.get(f"/v1/keys/{key['id']}", headers=AUTH).json() == changed


@pytest.mark.parametrize(
    ("body", "param"), [({}, "body"), ({"burst": -1}, "burst"), ({"id": "x"}, "id")]
)
def test_a_bad_patch_is_a_400_and_changes_nothing(client, body, param):
    key = create(client)
    r = client.patch(f"/v1/keys/{key['id']}", json=body, headers=AUTH)
    assert error_body(r, 400)["param"] == param
    shown = client.get(f"/v1/keys/{key['id']}", headers=AUTH).json()
    assert shown == {k: v for k, v in key.items() if k != "key"}


@pytest.mark.parametrize("method", ["GET", "PATCH"])
@pytest.mark.parametrize("key_id", ["abcdefghijkl", "nope", "ABCDEFGHIJKL", "a.b"])
def test_an_unknown_key_is_a_404(client, method, key_id):
    r = client.request(method, f"/v1/keys/{key_id}", json={"state": "active"}, headers=AUTH)
    assert error_body(r, 404)["code"] == "key_not_found"


def test_delete_is_a_204_and_idempotent(client):
    key = create(client)
    for _ in range(2):
        r = client.delete(f"/v1/keys/{key['id']}", headers=AUTH)
        assert r.status_code == 204 and r.content == b""
    assert client.get(f"/v1/keys/{key['id']}", headers=AUTH).status_code == 404
    assert client.delete("/v1/keys/nope", headers=AUTH).status_code == 204


def test_the_list_pages_with_a_cursor_and_shows_no_secrets(client):
    made = sorted(create(client, name=f"k{i}")["id"] for i in range(5))
    seen: list[str] = []
    cursor = ""
    while True:
        page = client.get(f"/v1/keys?limit=2&cursor={cursor}", headers=AUTH).json()
        assert len(page["items"]) <= 2
        assert all("key" not in item for item in page["items"])
        seen += [item["id"] for item in page["items"]]
        if page["next_cursor"] is None:
            break
        cursor = page["next_cursor"]
    assert seen == made


@pytest.mark.parametrize(
    ("method", "path"),
    [("POST", "/v1/keys"), ("GET", "/v1/keys"), ("GET", "/v1/keys/x"), ("DELETE", "/v1/keys/x")],
)
def test_the_keys_api_needs_an_admin_token(client, method, path):
    r = client.request(method, path, json={"name": "a"})
    assert error_body(r, 401)["code"] == "unauthorized"


def test_a_key_made_by_one_process_is_seen_by_another_on_the_same_storage(make_client):
    first, second = make_client(), make_client()
    key = create(first)
    assert second.get(f"/v1/keys/{key['id']}", headers=AUTH).json()["name"] == "acme"


def test_the_api_keys_examples_run_and_print_what_the_docs_show(tmp_path):
    from doc_examples import run_examples, section

    page = (Path(__file__).parent.parent / "docs" / "api-keys.md").read_text(encoding="utf-8")
    assert run_examples(section(page, "### Examples"), tmp_path) >= 5
