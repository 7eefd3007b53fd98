"""Templates (SPEC §2 and §5): the admin API, validation, paging, delivery through a
template, the version cut-over, and POST /v1/purge."""

from __future__ import annotations

import base64
from typing import Any

import httpx2
import pytest
import pyvips
from conftest import AUTH, decode, upload
from conftest import error_body as error
from starlette.testclient import TestClient

from server import signing

KEY = "template-test-signing-key-0123456789"
TEMPLATE_KEYS = {"name", "params", "allow", "public", "cache_control", "version", "updated_at"}


def put(client: TestClient, name: str, body: Any) -> httpx2.Response:
    return client.put(f"/v1/templates/{name}", json=body, headers=AUTH)


def define(client: TestClient, name: str, body: Any) -> dict[str, Any]:
    r = put(client, name, body)
    assert r.status_code in (200, 201), r.text
    answer: dict[str, Any] = r.json()
    return answer


def width_of(r: httpx2.Response) -> int:
    assert r.status_code == 200, r.text
    return int(decode(r.content).width)


@pytest.fixture
def photo(client) -> TestClient:
    upload(client, "photo.jpg", "photo.jpg")
    return client


# --- CRUD ------------------------------------------------------------------------------


def test_put_creates_then_replaces_bumping_the_version(client):
    first = put(client, "card", {"params": {"w": 100}})
    second = put(client, "card", {"params": {"w": 200}})
    assert (first.status_code, second.status_code) == (201, 200)
    assert (first.json()["version"], second.json()["version"]) == (1, 2)
    assert second.json()["params"] == {"w": 200}


def test_get_answers_what_was_put_with_name_version_and_updated_at(client):
    body = {
        "params": {"w": 640, "fmt": "webp", "enlarge": True, "g": "fp:0.5,0.25"},
        "allow": {"w": {"min": 100, "max": 800, "step": 100}, "dpr": None, "fmt": ["webp"]},
        "public": True,
        "cache_control": "public, max-age=600",
    }
    put_answer = define(client, "hero", body)
    r = client.get("/v1/templates/hero", headers=AUTH)
    assert r.status_code == 200, r.text
    got = r.json()
    assert got == put_answer
    assert set(got) == TEMPLATE_KEYS
    assert got["name"] == "hero"
    assert got["version"] == 1
    assert got["updated_at"].endswith("Z")
    for field in ("params", "allow", "public", "cache_control"):
        assert got[field] == body[field]


def test_get_fills_in_the_defaults_of_a_minimal_template(client):
    define(client, "bare", {})
    got = client.get("/v1/templates/bare", headers=AUTH).json()
    assert (got["params"], got["allow"], got["public"], got["cache_control"]) == (
        {},
        [],
        False,
        None,
    )


def test_delete_is_idempotent_and_then_the_template_is_gone(photo):
    define(photo, "card", {"params": {"w": 100}})
    assert photo.get("/t/card/photo.jpg").status_code == 200
    for _ in range(2):
        r = photo.delete("/v1/templates/card", headers=AUTH)
        assert r.status_code == 204
        assert r.headers["cache-control"] == "no-store"
    body = error(photo.get("/v1/templates/card", headers=AUTH), 404)
    assert body["code"] == "template_not_found"
    assert error(photo.get("/t/card/photo.jpg"), 404)["code"] == "template_not_found"


def test_a_deleted_and_recreated_template_starts_again_and_serves_its_new_params(photo):
    define(photo, "card", {"params": {"w": 100}})
    photo.delete("/v1/templates/card", headers=AUTH)
    again = define(photo, "card", {"params": {"w": 90}})
    assert again["version"] == 1
    assert width_of(photo.get("/t/card/photo.jpg")) == 90


ROUTES = [
    ("PUT", "/v1/templates/card"),
    ("GET", "/v1/templates/card"),
    ("GET", "/v1/templates"),
    ("DELETE", "/v1/templates/card"),
    ("POST", "/v1/urls"),
    ("POST", "/v1/purge"),
]


@pytest.mark.parametrize(("method", "path"), ROUTES)
@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer not-the-token-at-all"}, {"Authorization": "Basic abc"}],
    ids=["none", "wrong-token", "wrong-scheme"],
)
def test_every_template_route_needs_the_admin_token(client, method, path, headers):
    define(client, "card", {"params": {"w": 100}})
    r = client.request(method, path, json={"params": {}}, headers=headers)
    assert error(r, 401)["code"] == "unauthorized"
    # Nothing changed behind the refusal.
    assert client.get("/v1/templates/card", headers=AUTH).json()["version"] == 1


def test_every_template_answer_is_no_store(client):
    answers = [
        put(client, "card", {"params": {"w": 100}}),
        client.get("/v1/templates/card", headers=AUTH),
        client.get("/v1/templates", headers=AUTH),
        client.delete("/v1/templates/card", headers=AUTH),
    ]
    for r in answers:
        assert r.status_code < 300, r.text
        assert r.headers["cache-control"] == "no-store"


# --- Validation ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"params": {"w": 0}}, "params.w"),
        ({"params": {"w": "wide"}}, "params.w"),
        ({"params": {"fmt": "exe"}}, "params.fmt"),
        ({"params": {"w": [100]}}, "params.w"),
        ({"params": {"foo": 1}}, "params.foo"),
        ({"params": {"sig": "abc"}}, "params.sig"),
        ({"params": {"exp": 1999999999}}, "params.exp"),
        ({"params": ["w", 100]}, "params"),
        ({"allow": ["w", "zzz"]}, "allow.zzz"),
        ({"allow": ["sig"]}, "allow.sig"),
        ({"allow": ["exp"]}, "allow.exp"),
        ({"allow": "w"}, "allow"),
        ({"allow": {"w": "big"}}, "allow.w"),
        ({"allow": {"w": []}}, "allow.w"),
        ({"allow": {"w": {}}}, "allow.w"),
        ({"allow": {"w": {"min": 1, "top": 5}}}, "allow.w"),
        ({"allow": {"w": {"min": "1"}}}, "allow.w.min"),
        ({"allow": {"w": {"max": True}}}, "allow.w.max"),
        ({"allow": {"fmt": {"min": 1, "max": 2}}}, "allow.fmt"),
        ({"allow": {"w": {"min": 800, "max": 100}}}, "allow.w"),
        ({"allow": {"w": {"min": 100, "step": 0}}}, "allow.w.step"),
        ({"allow": {"w": {"min": 100, "step": -10}}}, "allow.w.step"),
        ({"allow": {"fmt": ["webp", "exe"]}}, "allow.fmt"),
        ({"allow": {"w": [100, 0]}}, "allow.w"),
        ({"public": "yes"}, "public"),
        ({"public": 1}, "public"),
        ({"cache_control": 600}, "cache_control"),
        ({"cache_control": ""}, "cache_control"),
        ({"cache_control": "public\r\nSet-Cookie: a=b"}, "cache_control"),
        ({"cache_control": "public, max-age=60\n"}, "cache_control"),
        ({"cache_control": "x" * 1000}, "cache_control"),
        ({"params": {}, "colour": "red"}, "colour"),
        ([{"params": {}}], "body"),
        ("card", "body"),
    ],
)
def test_a_bad_template_is_a_422_naming_the_field(client, body, field):
    body_answer = error(put(client, "card", body), 422)
    assert (body_answer["code"], body_answer["param"]) == ("invalid_template", field)
    error(client.get("/v1/templates/card", headers=AUTH), 404)


def test_a_refused_put_leaves_the_previous_version_in_place(client):
    define(client, "card", {"params": {"w": 100}})
    assert put(client, "card", {"params": {"w": 0}}).status_code == 422
    got = client.get("/v1/templates/card", headers=AUTH).json()
    assert (got["version"], got["params"]) == (1, {"w": 100})


@pytest.mark.parametrize("raw", [b"{", b"", b"params: {}", b"\xff\xfe"])
def test_a_body_that_is_not_json_is_a_400(client, raw):
    r = client.put(
        "/v1/templates/card",
        content=raw,
        headers={**AUTH, "Content-Type": "application/json"},
    )
    assert error(r, 400)["param"] == "body"


@pytest.mark.parametrize("name", ["Card", "-card", "card.v2", "c" * 65, "caf%C3%A9"])
def test_a_bad_template_name_is_a_400_naming_it(client, name):
    assert error(put(client, name, {}), 400)["param"] == "template"


def test_the_no_template_name_underscore_cannot_be_defined(client):
    body = error(put(client, "_", {"params": {"w": 100}}), 422)
    assert (body["code"], body["param"]) == ("invalid_template", "name")
    assert client.get("/v1/templates", headers=AUTH).json()["items"] == []


# --- Paging ----------------------------------------------------------------------------


def test_listing_pages_through_every_template_in_name_order(client):
    names = ["e-five", "a-one", "d-four", "b-two", "c-three"]
    for name in names:
        define(client, name, {"params": {"w": 100}})
    seen: list[str] = []
    pages = 0
    cursor = None
    while True:
        query = "limit=2" + (f"&cursor={cursor}" if cursor else "")
        r = client.get(f"/v1/templates?{query}", headers=AUTH)
        assert r.status_code == 200, r.text
        body = r.json()
        assert set(body) == {"items", "next_cursor"}
        assert len(body["items"]) <= 2
        assert all(set(item) == TEMPLATE_KEYS for item in body["items"])
        seen.extend(item["name"] for item in body["items"])
        pages += 1
        cursor = body["next_cursor"]
        if cursor is None:
            break
        assert pages < 5, "the cursor never ran out"
    assert seen == sorted(names)
    assert pages == 3


def test_listing_without_a_limit_returns_everything_with_no_cursor(client):
    for name in ("a", "b", "c"):
        define(client, name, {})
    body = client.get("/v1/templates", headers=AUTH).json()
    assert [item["name"] for item in body["items"]] == ["a", "b", "c"]
    assert body["next_cursor"] is None


@pytest.mark.parametrize(
    "cursor",
    [
        base64.urlsafe_b64encode(b"\xff\xfe\xfd").decode(),  # base64url, but not UTF-8
        "!!!!",
    ],
    ids=["not-utf8", "not-base64url"],
)
def test_a_bad_cursor_is_a_400_naming_it(client, cursor):
    define(client, "card", {})
    r = client.get(f"/v1/templates?cursor={cursor}", headers=AUTH)
    assert error(r, 400)["param"] == "cursor"


@pytest.mark.parametrize("limit", ["0", "1001", "-1", "ten", "2.5", ""])
def test_a_limit_out_of_range_is_a_400_naming_it(client, limit):
    r = client.get(f"/v1/templates?limit={limit}", headers=AUTH)
    assert error(r, 400)["param"] == "limit"


# --- Delivery through a template -------------------------------------------------------


def test_template_params_are_the_defaults_and_allowed_url_params_override_them(photo):
    define(photo, "card", {"params": {"w": 100, "fmt": "png"}, "allow": ["w"]})
    r = photo.get("/t/card/photo.jpg")
    assert width_of(r) == 100
    assert r.headers["content-type"] == "image/png"
    overridden = photo.get("/t/card/photo.jpg?w=150")
    assert width_of(overridden) == 150
    assert overridden.headers["content-type"] == "image/png"
    body = error(photo.get("/t/card/photo.jpg?fmt=webp"), 403)
    assert (body["code"], body["param"]) == ("param_not_allowed", "fmt")


@pytest.mark.parametrize(("allowed", "asked"), [("jpeg", "jpg"), ("jpg", "jpeg")])
def test_jpg_and_jpeg_are_one_format_to_an_allow_list(photo, allowed, asked):
    define(photo, "card", {"params": {"w": 100}, "allow": {"fmt": [allowed, "webp"]}})
    r = photo.get(f"/t/card/photo.jpg?fmt={asked}")
    assert r.status_code == 200 and r.headers["content-type"] == "image/jpeg"
    assert error(photo.get("/t/card/photo.jpg?fmt=png"), 403)["param"] == "fmt"


def test_a_signed_url_overrides_template_params_it_could_not_unsigned(make_client):
    client = make_client(signing_keys=(KEY,))
    upload(client, "photo.jpg", "photo.jpg")
    define(client, "card", {"params": {"w": 100}})
    assert width_of(client.get(signing.sign("/t/card/photo.jpg", KEY))) == 100
    assert width_of(client.get(signing.sign("/t/card/photo.jpg?w=60", KEY))) == 60


@pytest.mark.parametrize(
    ("query", "allowed"),
    [
        ("w=100", True),
        ("w=200", True),
        ("w=800", True),
        ("w=150", False),  # off the step
        ("w=900", False),  # over max
        ("w=0", False),  # under min
        ("fmt=webp", True),
        ("fmt=auto", True),
        ("fmt=png", False),
        ("w=200&fmt=png", False),
    ],
)
def test_allow_constraints_let_through_only_what_they_describe(photo, query, allowed):
    allow = {"w": {"min": 100, "max": 800, "step": 100}, "fmt": ["webp", "auto"]}
    define(photo, "card", {"params": {"w": 300}, "allow": allow})
    r = photo.get(f"/t/card/photo.jpg?{query}")
    if allowed:
        assert r.status_code == 200, r.text
        expected = dict(pair.split("=") for pair in query.split("&"))
        if "w" in expected:
            assert decode(r.content).width == int(expected["w"])
        if expected.get("fmt") == "webp":
            assert r.headers["content-type"] == "image/webp"
    else:
        body = error(r, 403)
        assert body["code"] == "param_not_allowed"
        assert body["param"] in query


@pytest.mark.parametrize("query", ["w=inf", "w=1e400", "rot=-inf"])
def test_a_non_finite_value_against_a_stepped_range_is_refused_not_a_500(photo, query):
    allow = {"w": {"min": 100, "step": 100}, "rot": {"step": 90}}
    define(photo, "card", {"params": {"w": 100}, "allow": allow})
    body = error(photo.get(f"/t/card/photo.jpg?{query}"), 403)
    assert (body["code"], body["param"]) == ("param_not_allowed", query.split("=")[0])


def test_a_template_cache_control_is_served_as_is(photo):
    policy = "public, max-age=600, s-maxage=3600"
    define(photo, "card", {"params": {"w": 100}, "allow": ["v"], "cache_control": policy})
    assert photo.get("/t/card/photo.jpg").headers["cache-control"] == policy
    # Even on a versioned URL, whose default would be a year and immutable.
    assert photo.get("/t/card/photo.jpg?v=2").headers["cache-control"] == policy


def test_a_template_without_cache_control_gets_the_default_policy(photo):
    define(photo, "card", {"params": {"w": 100}})
    assert photo.get("/t/card/photo.jpg").headers["cache-control"] == (
        "public, max-age=86400, stale-while-revalidate=604800"
    )


# --- Version cut-over ------------------------------------------------------------------


def test_a_new_template_version_is_never_served_an_old_variant(photo):
    define(photo, "card", {"params": {"w": 100}})
    first = photo.get("/t/card/photo.jpg")
    cached = photo.get("/t/card/photo.jpg")
    assert width_of(first) == width_of(cached) == 100
    assert (first.headers["x-cache"], cached.headers["x-cache"]) == ("miss", "hit-memory")

    assert define(photo, "card", {"params": {"w": 120}})["version"] == 2

    after = photo.get("/t/card/photo.jpg")
    assert width_of(after) == 120
    assert after.headers["x-cache"] == "miss"
    assert after.headers["etag"] != first.headers["etag"]
    # A cache revalidating with the old ETag gets the new image, not a 304.
    revalidated = photo.get("/t/card/photo.jpg", headers={"If-None-Match": first.headers["etag"]})
    assert width_of(revalidated) == 120
    assert photo.get("/t/card/photo.jpg").headers["x-cache"] == "hit-memory"


def test_an_unchanged_template_put_again_still_gets_a_new_variant_key(photo):
    define(photo, "card", {"params": {"w": 100}})
    first = photo.get("/t/card/photo.jpg")
    define(photo, "card", {"params": {"w": 100}})
    again = photo.get("/t/card/photo.jpg")
    assert width_of(again) == 100
    assert again.headers["etag"] != first.headers["etag"]


# --- Purge -----------------------------------------------------------------------------


def warm(client: TestClient, url: str) -> None:
    """Render `url` into the memory cache, and check it is there."""
    client.get(url)
    assert client.get(url).headers["x-cache"] == "hit-memory"


def purge(client: TestClient, body: Any) -> httpx2.Response:
    return client.post("/v1/purge", json=body, headers=AUTH)


def test_purging_a_template_drops_its_variants_and_only_its(photo):
    define(photo, "card", {"params": {"w": 100}, "allow": ["w"]})
    define(photo, "other", {"params": {"w": 100}})
    for url in ("/t/card/photo.jpg", "/t/card/photo.jpg?w=200", "/t/other/photo.jpg"):
        warm(photo, url)
    r = purge(photo, {"template": "card"})
    assert r.status_code == 200, r.text
    assert r.headers["cache-control"] == "no-store"
    assert r.json() == {"purged": 2}
    assert photo.get("/t/card/photo.jpg").headers["x-cache"] == "miss"
    assert photo.get("/t/card/photo.jpg?w=200").headers["x-cache"] == "miss"
    assert photo.get("/t/other/photo.jpg").headers["x-cache"] == "hit-memory"
    assert purge(photo, {"template": "card"}).json()["purged"] == 2  # the two just re-rendered


def test_purging_an_asset_drops_its_variants_and_only_its(photo):
    upload(photo, "alpha.png", "alpha.png")
    define(photo, "card", {"params": {"w": 100}})
    for url in ("/t/_/photo.jpg?w=50", "/t/card/photo.jpg", "/t/_/alpha.png?w=50"):
        warm(photo, url)
    r = purge(photo, {"id": "photo.jpg"})
    assert r.status_code == 200, r.text
    assert r.json() == {"purged": 2}
    assert photo.get("/t/_/photo.jpg?w=50").headers["x-cache"] == "miss"
    assert photo.get("/t/card/photo.jpg").headers["x-cache"] == "miss"
    assert photo.get("/t/_/alpha.png?w=50").headers["x-cache"] == "hit-memory"


def test_purging_what_is_not_cached_purges_nothing(photo):
    assert purge(photo, {"template": "card"}).json() == {"purged": 0}
    assert purge(photo, {"id": "nothing/here.jpg"}).json() == {"purged": 0}


@pytest.mark.parametrize(
    "body",
    [
        {},
        [],
        "photo.jpg",
        {"id": "photo.jpg", "template": "card"},
        {"asset": "photo.jpg"},
        {"template": "Not A Name"},
        {"id": "../etc/passwd"},
    ],
)
def test_a_bad_purge_body_is_a_400(photo, body):
    error(purge(photo, body), 400)


def test_a_purge_form_body_is_a_415_asking_for_json(photo):
    # The admin API's one JSON rule (tests/test_admin_bodies.py): a form is not JSON.
    r = photo.post("/v1/purge", content=b"template=card", headers=AUTH)
    assert error(r, 415)["code"] == "unsupported_media_type"


def _corner_mean(body: bytes, corner: str, size: int = 20) -> float:
    image = decode(body)
    x = image.width - size if "e" in corner else 0
    y = image.height - size if "s" in corner else 0
    return float(image.crop(x, y, size, size).avg())


def test_a_template_watermark_is_drawn_where_it_says_and_urls_cannot_remove_it(uploaded):
    white = pyvips.Image.black(64, 64).new_from_image([255, 255, 255]).pngsave_buffer()
    assert (
        uploaded.put("/v1/assets/brand/white.png", content=white, headers=AUTH).status_code == 201
    )
    body = {
        "params": {
            "w": 200,
            "fmt": "png",
            "wm": {
                "asset": "brand/white.png",
                "position": "se",
                "opacity": 1,
                "scale": 0.2,
                "margin": 0,
            },
        },
        "allow": ["w"],
        "public": True,
    }
    assert uploaded.put("/v1/templates/marked", json=body, headers=AUTH).status_code == 201
    plain = uploaded.get("/t/_/photo.jpg?w=200&fmt=png").content
    marked = uploaded.get("/t/marked/photo.jpg").content
    assert _corner_mean(marked, "se") > 250  # the white mark fills the bottom-right corner
    assert abs(_corner_mean(marked, "nw") - _corner_mean(plain, "nw")) < 1  # elsewhere untouched
    assert _corner_mean(plain, "se") < 200
    unknown = uploaded.get("/t/marked/photo.jpg?wm=none")
    # wm is no URL parameter at all: a URL can neither set nor remove the mark.
    assert unknown.status_code == 400
    assert unknown.json()["error"]["param"] == "wm"


def test_a_new_watermark_asset_renders_anew(uploaded):
    white = pyvips.Image.black(32, 32).new_from_image([255, 255, 255]).pngsave_buffer()
    black = pyvips.Image.black(32, 32).new_from_image([0, 0, 0]).pngsave_buffer()
    uploaded.put("/v1/assets/brand/mark.png", content=white, headers=AUTH)
    body = {
        "params": {
            "w": 100,
            "fmt": "png",
            "wm": {"asset": "brand/mark.png", "opacity": 1, "margin": 0},
        }
    }
    uploaded.put("/v1/templates/m", json=body, headers=AUTH)
    first = uploaded.get("/t/m/photo.jpg")
    uploaded.put("/v1/assets/brand/mark.png", content=black, headers=AUTH)
    second = uploaded.get("/t/m/photo.jpg")
    assert first.headers["etag"] != second.headers["etag"]
    assert _corner_mean(first.content, "se", 10) > 250
    assert _corner_mean(second.content, "se", 10) < 5


def test_a_template_naming_a_missing_watermark_asset_is_a_422(client):
    body = {"params": {"wm": {"asset": "nope/logo.png"}}}
    r = client.put("/v1/templates/t", json=body, headers=AUTH)
    assert r.status_code == 422
    assert r.json()["error"]["param"] == "params.wm.asset"
