"""Signed delivery URLs (SPEC §3), the unsigned policy, and POST /v1/urls, over HTTP.

The expected signatures are computed here with nothing but hmac, hashlib and base64, so a
change in server.signing cannot move the goalposts with it.
"""

from __future__ import annotations

import base64
import email.utils
import hashlib
import hmac
import time
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import httpx2
import pytest
from conftest import AUTH, decode, upload
from conftest import error_body as error
from itsdangerous import Signer
from starlette.testclient import TestClient

from server import signing, urls

OLD = "old-signing-key-0000000000000000000000"
NEW = "new-signing-key-1111111111111111111111"
STRANGER = "unknown-signing-key-22222222222222222"

VECTOR_KEY = "imgcdn-test-vector-key-0123456789abcdef"
VECTOR_PATH = "/t/card/products/42.jpg?w=800&fmt=auto"
VECTOR_SIG = "aRk2pVFB6nIsGbva5CDbIo_vsnnNbvvGhmNZIF7sF0c"


def reference_sig(secret: str, message: str) -> str:
    """SPEC §3, independently: b64url(HMAC(HMAC(secret, "imgcdn.url"), message)), unpadded."""
    derived = hmac.new(secret.encode(), b"imgcdn.url", hashlib.sha256).digest()
    mac = hmac.new(derived, message.encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(mac).rstrip(b"=").decode()


def signed_with(secret: str, path_and_query: str) -> str:
    glue = "&" if "?" in path_and_query else "?"
    return f"{path_and_query}{glue}sig={reference_sig(secret, path_and_query)}"


def width_of(r: httpx2.Response) -> int:
    assert r.status_code == 200, r.text
    return int(decode(r.content).width)


def max_age(r: httpx2.Response) -> int:
    directives = [d.strip() for d in r.headers["cache-control"].split(",")]
    ages = [int(d.split("=", 1)[1]) for d in directives if d.lower().startswith("max-age=")]
    assert len(ages) == 1, r.headers["cache-control"]
    return ages[0]


def query_of(url: str) -> dict[str, str]:
    return dict(parse_qsl(urlsplit(url).query, keep_blank_values=True))


def path_of(url: str) -> str:
    """The path and query of an absolute URL, exactly as written (no re-encoding)."""
    parts = urlsplit(url)
    return f"{parts.path}?{parts.query}" if parts.query else parts.path


@pytest.fixture
def keyed(make_client) -> TestClient:
    """A server with two signing keys (OLD verifies, NEW signs), a template and two assets."""
    client = make_client(signing_keys=(OLD, NEW))
    upload(client, "photo.jpg", "photo.jpg")
    upload(client, "other.jpg", "photo.jpg")
    r = client.put("/v1/templates/card", json={"params": {}}, headers=AUTH)
    assert r.status_code == 201, r.text
    return client


@pytest.fixture
def keyless(client) -> TestClient:
    upload(client, "photo.jpg", "photo.jpg")
    return client


# --- Vectors ---------------------------------------------------------------------------


def test_the_pinned_vector_matches_the_reference_hmac_and_the_server():
    assert reference_sig(VECTOR_KEY, VECTOR_PATH) == VECTOR_SIG
    assert signing.sign(VECTOR_PATH, VECTOR_KEY) == f"{VECTOR_PATH}&sig={VECTOR_SIG}"


@pytest.mark.parametrize(
    "path_and_query",
    [
        VECTOR_PATH,
        "/t/_/a.jpg",
        "/t/_/products/42/front.jpg?w=800&h=600&fit=cover&g=fp:0.5,0.25",
        "/t/thumb/caf%C3%A9%20au%20lait.jpg?v=3&exp=1999999999",
        "/t/_/odd&sig=name.jpg?fmt=webp",
    ],
)
@pytest.mark.parametrize("key", [VECTOR_KEY, OLD, "x" * 32])
def test_the_server_signs_exactly_as_the_spec_and_itsdangerous_do(path_and_query, key):
    expected = reference_sig(key, path_and_query)
    glue = "&" if "?" in path_and_query else "?"
    assert signing.sign(path_and_query, key) == f"{path_and_query}{glue}sig={expected}"
    signer = Signer(key, salt="imgcdn.url", digest_method=hashlib.sha256, key_derivation="hmac")
    assert signer.get_signature(path_and_query.encode()).decode() == expected


def test_split_finds_the_signed_string_and_the_sig_of_a_signed_url():
    url = signed_with(NEW, VECTOR_PATH)
    path, _, query = url.partition("?")
    assert signing.split(path, query) == (VECTOR_PATH, reference_sig(NEW, VECTOR_PATH))
    assert signing.split("/t/_/a.jpg", "w=1") == ("/t/_/a.jpg?w=1", None)


# --- Verification over HTTP ------------------------------------------------------------


@pytest.mark.parametrize("key", [NEW, OLD], ids=["signing-key", "rotated-out-key"])
def test_a_url_signed_with_any_configured_key_is_served(keyed, key):
    r = keyed.get(signed_with(key, "/t/_/photo.jpg?w=120"))
    assert width_of(r) == 120


def test_a_url_signed_with_an_unknown_key_is_403_invalid_signature(keyed):
    r = keyed.get(signed_with(STRANGER, "/t/_/photo.jpg?w=120"))
    assert error(r, 403)["code"] == "invalid_signature"


def _flip_last_char(url: str) -> str:
    return url[:-1] + ("A" if url[-1] != "A" else "B")


TAMPERS = {
    "template": lambda u: u.replace("/t/card/", "/t/_/"),
    "id": lambda u: u.replace("/photo.jpg", "/other.jpg"),
    "param-value": lambda u: u.replace("w=100", "w=101"),
    "param-added": lambda u: u.replace("&sig=", "&fit=fill&sig="),
    "param-order": lambda u: u.replace("w=100&h=80", "h=80&w=100"),
    "param-removed": lambda u: u.replace("&h=80", ""),
    "exp-changed": lambda u: u.replace("&exp=", "&exp=1"),
    "sig-altered": _flip_last_char,
    "sig-truncated": lambda u: u[:-1],
    "sig-empty": lambda u: u.split("&sig=")[0] + "&sig=",
    "sig-of-another-url": lambda u: (
        u.split("&sig=")[0] + "&sig=" + reference_sig(NEW, "/t/card/photo.jpg?w=100")
    ),
}


@pytest.mark.parametrize("tamper", TAMPERS)
def test_tampering_with_any_part_of_a_signed_url_is_403(keyed, tamper):
    exp = int(time.time()) + 3600
    url = signed_with(NEW, f"/t/card/photo.jpg?w=100&h=80&exp={exp}")
    assert keyed.get(url).status_code == 200
    tampered = TAMPERS[tamper](url)
    assert tampered != url
    assert error(keyed.get(tampered), 403)["code"] == "invalid_signature"


@pytest.mark.parametrize(
    "query", ["w=100&sig={sig}&h=80", "sig={sig}&w=100", "sig={sig}&sig={sig}&w=1"]
)
def test_a_sig_that_is_not_the_last_parameter_is_a_400_naming_sig(keyed, query):
    sig = reference_sig(NEW, "/t/_/photo.jpg?w=100")
    r = keyed.get("/t/_/photo.jpg?" + query.format(sig=sig))
    assert error(r, 400)["param"] == "sig"


def test_a_signed_url_on_a_server_without_keys_is_403_invalid_signature(keyless):
    r = keyless.get(signed_with(NEW, "/t/_/photo.jpg?w=100"))
    assert error(r, 403)["code"] == "invalid_signature"


def test_the_signed_string_is_the_raw_path_exactly_as_sent(keyed):
    upload(keyed, "my photo.jpg", "photo.jpg")
    good = signed_with(NEW, "/t/_/my%20photo.jpg?w=50")
    assert width_of(keyed.get(good)) == 50
    # The same id, encoded differently: the same asset, but not the string that was signed.
    recoded = good.replace("/my%20photo", "/%6Dy%20photo")
    assert error(keyed.get(recoded), 403)["code"] == "invalid_signature"
    # Signing the decoded form does not cover the %20 the client actually sends.
    decoded = signed_with(NEW, "/t/_/my photo.jpg?w=50")
    assert error(keyed.get(decoded), 403)["code"] == "invalid_signature"


# --- Expiry ----------------------------------------------------------------------------


def test_a_signed_url_past_its_exp_is_403_url_expired(keyed):
    r = keyed.get(signed_with(NEW, f"/t/_/photo.jpg?w=100&exp={int(time.time()) - 5}"))
    assert error(r, 403)["code"] == "url_expired"


@pytest.mark.parametrize("extra", ["", "&v=7"], ids=["default-policy", "versioned-policy"])
def test_an_expiring_url_is_never_cached_past_its_exp(keyed, extra):
    before = int(time.time())
    exp = before + 600
    r = keyed.get(signed_with(NEW, f"/t/_/photo.jpg?w=100{extra}&exp={exp}"))
    assert r.status_code == 200, r.text
    assert exp - time.time() - 5 <= max_age(r) <= exp - before
    cache_control = r.headers["cache-control"].lower()
    assert "immutable" not in cache_control
    assert "stale-while-revalidate" not in cache_control
    assert "stale-if-error" not in cache_control
    expires = email.utils.parsedate_to_datetime(r.headers["expires"]).timestamp()
    assert abs(expires - exp) <= 2


def test_an_expiring_url_keeps_a_template_max_age_shorter_than_its_exp(keyed):
    body = {"params": {}, "cache_control": "public, max-age=60"}
    assert keyed.put("/v1/templates/short", json=body, headers=AUTH).status_code == 201
    exp = int(time.time()) + 600
    r = keyed.get(signed_with(NEW, f"/t/short/photo.jpg?w=100&exp={exp}"))
    assert r.status_code == 200, r.text
    assert max_age(r) == 60
    assert "public" in r.headers["cache-control"]


def test_exp_on_an_unsigned_url_is_a_400_naming_exp(keyless):
    r = keyless.get(f"/t/_/photo.jpg?w=100&exp={int(time.time()) + 600}")
    assert error(r, 400)["param"] == "exp"


def test_a_malformed_exp_on_a_signed_url_is_a_400_naming_exp(keyed):
    r = keyed.get(signed_with(NEW, "/t/_/photo.jpg?w=100&exp=soon"))
    assert error(r, 400)["param"] == "exp"


# --- The unsigned policy ---------------------------------------------------------------


def test_without_keys_unsigned_urls_are_served(keyless):
    assert width_of(keyless.get("/t/_/photo.jpg?w=90")) == 90


@pytest.fixture
def public(keyed) -> TestClient:
    body = {"params": {"w": 100}, "allow": ["w", "fmt"], "public": True}
    assert keyed.put("/v1/templates/open", json=body, headers=AUTH).status_code == 201
    return keyed


def test_with_keys_an_unsigned_url_without_a_template_is_403_signature_required(public):
    r = public.get("/t/_/photo.jpg?w=100")
    assert error(r, 403)["code"] == "signature_required"


def test_with_keys_an_unsigned_url_through_a_private_template_is_403(public):
    r = public.get("/t/card/photo.jpg")
    assert error(r, 403)["code"] == "signature_required"


def test_with_keys_a_public_template_answers_unsigned_within_its_allow_list(public):
    assert width_of(public.get("/t/open/photo.jpg")) == 100
    assert width_of(public.get("/t/open/photo.jpg?w=150")) == 150
    r = public.get("/t/open/photo.jpg?w=150&h=50")
    body = error(r, 403)
    assert (body["code"], body["param"]) == ("param_not_allowed", "h")


def test_unsigned_allow_with_keys_serves_unsigned_urls_and_still_checks_signed_ones(
    make_client,
):
    client = make_client(signing_keys=(NEW,), unsigned="allow")
    upload(client, "photo.jpg", "photo.jpg")
    assert width_of(client.get("/t/_/photo.jpg?w=70")) == 70
    assert width_of(client.get(signed_with(NEW, "/t/_/photo.jpg?w=80"))) == 80
    r = client.get(signed_with(STRANGER, "/t/_/photo.jpg?w=80"))
    assert error(r, 403)["code"] == "invalid_signature"


def test_a_signed_url_may_set_any_parameter_on_any_template(public):
    # "card" is private with no allow list; "open" allows only w and fmt.
    assert width_of(public.get(signed_with(NEW, "/t/card/photo.jpg?w=60"))) == 60
    r = public.get(signed_with(NEW, "/t/open/photo.jpg?w=80&h=40&fit=fill"))
    image = decode(r.content)
    assert (image.width, image.height) == (80, 40)


# --- POST /v1/urls ---------------------------------------------------------------------


def post_urls(client: TestClient, body: dict[str, Any]) -> httpx2.Response:
    return client.post("/v1/urls", json=body, headers=AUTH)


def test_a_url_from_the_api_without_keys_is_unsigned_versioned_and_works(keyless):
    etag = keyless.get("/v1/assets/photo.jpg", headers=AUTH).json()["etag"]
    r = post_urls(keyless, {"id": "photo.jpg", "params": {"w": 110}})
    assert r.status_code == 200, r.text
    assert r.headers["cache-control"] == "no-store"
    body = r.json()
    assert body["expires_at"] is None
    query = query_of(body["url"])
    assert "sig" not in query and "exp" not in query
    assert query["v"] and etag.startswith(query["v"])
    served = keyless.get(body["url"])
    assert width_of(served) == 110
    assert "immutable" in served.headers["cache-control"]


def test_a_url_from_the_api_with_keys_is_signed_with_the_last_key_and_works(keyed):
    body = post_urls(keyed, {"id": "photo.jpg", "template": "card", "params": {"w": 90}}).json()
    signed_string, _, sig = path_of(body["url"]).partition("&sig=")
    assert sig == reference_sig(NEW, signed_string)
    assert signed_string.startswith("/t/card/photo.jpg?")
    assert "v" in query_of(body["url"])
    assert width_of(keyed.get(body["url"])) == 90


def test_a_url_from_the_api_applies_the_template_defaults(keyed):
    r = keyed.put("/v1/templates/small", json={"params": {"w": 64}}, headers=AUTH)
    assert r.status_code == 201, r.text
    url = post_urls(keyed, {"id": "photo.jpg", "template": "small"}).json()["url"]
    assert width_of(keyed.get(url)) == 64


def test_a_url_from_the_api_through_a_template_works_on_a_server_without_keys(keyless):
    body = {"params": {"w": 100}, "allow": ["w"]}
    assert keyless.put("/v1/templates/card", json=body, headers=AUTH).status_code == 201
    url = post_urls(keyless, {"id": "photo.jpg", "template": "card"}).json()["url"]
    assert width_of(keyless.get(url)) == 100


def test_the_url_api_takes_json_params_as_a_template_does(keyless):
    body = {"id": "photo.jpg", "params": {"w": 1000, "enlarge": True}}
    r = post_urls(keyless, body)
    assert r.status_code == 200, r.text
    assert width_of(keyless.get(r.json()["url"])) == 1000


def test_a_new_upload_gets_a_new_version_in_its_urls(keyless):
    first = post_urls(keyless, {"id": "photo.jpg"}).json()["url"]
    upload(keyless, "photo.jpg", "p3.jpg")
    second = post_urls(keyless, {"id": "photo.jpg"}).json()["url"]
    assert query_of(first)["v"] != query_of(second)["v"]


def test_expires_in_s_adds_exp_and_expires_at_and_caps_the_cache(keyed):
    before = int(time.time())
    r = post_urls(keyed, {"id": "photo.jpg", "params": {"w": 100}, "expires_in_s": 300})
    body = r.json()
    assert before + 300 <= body["expires_at"] <= int(time.time()) + 300
    signed_string, _, sig = path_of(body["url"]).partition("&sig=")
    assert sig == reference_sig(NEW, signed_string)
    assert query_of(body["url"])["exp"] == str(body["expires_at"])
    served = keyed.get(body["url"])
    assert width_of(served) == 100
    assert max_age(served) <= 300


def test_expires_in_s_without_keys_is_a_400_naming_it(keyless):
    r = post_urls(keyless, {"id": "photo.jpg", "expires_in_s": 300})
    assert error(r, 400)["param"] == "expires_in_s"


@pytest.mark.parametrize(
    "value",
    [
        0,
        -5,
        "300",
        1.5,
        400 * 86400,
        True,
    ],
)
def test_a_bad_expires_in_s_is_a_400_naming_it(keyed, value):
    r = post_urls(keyed, {"id": "photo.jpg", "expires_in_s": value})
    assert error(r, 400)["param"] == "expires_in_s"


@pytest.mark.parametrize("keys", [(), (OLD, NEW)], ids=["unsigned", "signed"])
def test_widths_give_a_srcset_of_working_urls_one_per_width(make_client, keys):
    client = make_client(signing_keys=keys)
    upload(client, "photo.jpg", "photo.jpg")
    r = post_urls(client, {"id": "photo.jpg", "params": {"fmt": "png"}, "widths": [300, 100, 200]})
    assert r.status_code == 200, r.text
    entries = [e.strip().rsplit(" ", 1) for e in r.json()["srcset"].split(",")]
    assert [descriptor for _, descriptor in entries] == ["100w", "200w", "300w"]
    for url, descriptor in entries:
        assert ("sig" in query_of(url)) == bool(keys)
        served = client.get(url)
        assert width_of(served) == int(descriptor.removesuffix("w"))
        assert served.headers["content-type"] == "image/png"


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"params": {"w": 0}}, "w"),
        ({"params": {"foo": 1}}, "foo"),
        ({"params": {"fmt": "exe"}}, "fmt"),
        ({"params": {"sig": "abc"}}, "sig"),
        ({"params": {"exp": 1999999999}}, "exp"),
        ({"params": "w=100"}, "params"),
        ({"widths": []}, "widths"),
        ({"widths": [0]}, "widths"),
        ({"widths": ["100"]}, "widths"),
        ({"template": "Not A Name"}, "template"),
    ],
)
def test_bad_input_to_the_url_api_is_a_400_naming_it(keyed, body, param):
    r = post_urls(keyed, {"id": "photo.jpg", **body})
    assert error(r, 400)["param"] == param


def test_the_url_api_needs_an_id_and_404s_on_unknown_assets_and_templates(keyed):
    assert error(post_urls(keyed, {"template": "card"}), 400)["param"] == "id"
    assert error(post_urls(keyed, {"id": "nope.jpg"}), 404)["code"] == "asset_not_found"
    r = post_urls(keyed, {"id": "photo.jpg", "template": "nope"})
    assert error(r, 404)["code"] == "template_not_found"


# --- urls.finish: the signer `imgcdn sign` and the API share ---------------------------


def test_finish_without_keys_or_expiry_leaves_the_url_alone():
    assert urls.finish("/t/_/a.jpg?w=1", (), None) == ("/t/_/a.jpg?w=1", None)


def test_finish_signs_with_the_last_key():
    url, expires_at = urls.finish("/t/_/a.jpg?w=1", (OLD, NEW), None)
    assert url == signed_with(NEW, "/t/_/a.jpg?w=1")
    assert expires_at is None
    assert urls.finish("/t/_/a.jpg", (NEW,), None)[0] == signed_with(NEW, "/t/_/a.jpg")


@pytest.mark.parametrize(
    ("path", "glue"), [("/t/_/a.jpg?w=1", "&"), ("/t/_/a.jpg", "?")], ids=["query", "bare"]
)
def test_finish_adds_exp_before_the_sig_so_the_sig_covers_it(path, glue):
    before = int(time.time())
    url, expires_at = urls.finish(path, (NEW,), 60)
    assert expires_at is not None and before + 60 <= expires_at <= int(time.time()) + 60
    assert url == signed_with(NEW, f"{path}{glue}exp={expires_at}")


def test_finish_with_expiry_and_no_keys_adds_exp_unsigned():
    url, expires_at = urls.finish("/t/_/a.jpg", (), 60)
    assert url == f"/t/_/a.jpg?exp={expires_at}"


def test_a_url_from_finish_is_served_with_its_expiry(keyed):
    url, expires_at = urls.finish("/t/_/photo.jpg?w=100", (OLD, NEW), 120)
    r = keyed.get(url)
    assert width_of(r) == 100
    assert expires_at is not None and max_age(r) <= 120
