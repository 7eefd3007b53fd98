"""One property through the real app (TestClient, real libvips on tests/images): whatever
delivery URL a stranger sends, the answer is an image, a 304, or a JSON 4xx, never a 5xx.
Kept to 50 examples: each one renders."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import pytest
from conftest import AUTH, IMAGES, TOKEN
from grammar import HOSTILE, INVALID, NAMES, VALID, decimals, ints, query
from hypothesis import event, given, settings
from hypothesis import strategies as st
from starlette.testclient import TestClient

from server import signing
from server.app import create_app
from server.settings import Settings

KEY = "http-property-signing-key-0123456789abcdef"
ASSETS = ("photo.jpg", "alpha.png", "anim.gif")
TEMPLATE = {
    "params": {"w": 120, "fmt": "png"},
    "allow": {"w": {"min": 40, "max": 400, "step": 40}, "fmt": ["png", "webp"], "dpr": None},
    "public": True,
}


@pytest.fixture(scope="module")
def app_client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    """One app for every example: signing keys, unsigned URLs allowed (through a template's
    allow-list), and small output limits so that no example renders for long."""
    settings = Settings(
        data_dir=Path(tmp_path_factory.mktemp("http-properties")),
        admin_tokens=(TOKEN,),
        signing_keys=(KEY,),
        unsigned="allow",
        render_threads=2,
        max_output_side=1024,
        max_output_pixels=600_000,
    )
    with TestClient(create_app(settings)) as client:
        for name in ASSETS:
            r = client.put(f"/v1/assets/{name}", content=(IMAGES / name).read_bytes(), headers=AUTH)
            assert r.status_code in (200, 201), r.text
        r = client.put("/v1/templates/card", json=TEMPLATE, headers=AUTH)
        assert r.status_code in (200, 201), r.text
        yield client


# Mostly renderable values; the grammar's whole range and values outside it now and then.
SMALL = {
    **VALID,
    "w": ints(1, 300),
    "h": ints(1, 300),
    "blur": decimals(0.3, 4, 3),
    "sharpen": decimals(0.3, 4, 3),
    "exp": ints(4_000_000_000, 253_402_300_799),
    "crop": st.tuples(*[st.integers(0, 60)] * 2, *[st.integers(1, 120)] * 2).map(
        lambda box: ",".join(map(str, box))
    ),
}


@st.composite
def delivery_urls(draw: st.DrawFn) -> tuple[str, dict[str, str]]:
    template = draw(st.sampled_from(["_"] * 5 + ["card"] * 3 + ["missing", "Bad!"]))
    asset_id = draw(
        st.sampled_from(ASSETS) if draw(st.integers(0, 5)) else st.sampled_from(["x.jpg", *HOSTILE])
    )
    names = draw(
        st.lists(st.sampled_from([n for n in NAMES if n != "sig"]), unique=True, max_size=4)
    )
    pairs = []
    for name in names:
        kind = draw(st.sampled_from(["small"] * 8 + ["valid", "invalid"]))
        pairs.append((name, draw({"small": SMALL, "valid": VALID, "invalid": INVALID}[kind][name])))
    path = f"/t/{template}/{quote(asset_id.encode('utf-8', 'surrogatepass'), safe='/')}"
    text = draw(query(pairs))
    url = f"{path}?{text}" if text else path
    how = draw(st.sampled_from(["unsigned", "signed", "signed", "signed", "tampered"]))
    if how != "unsigned":
        url = signing.sign(url, KEY)
    if how == "tampered":
        url = url[:-1] + ("A" if url[-1] != "A" else "B")
    headers = {"If-None-Match": "*"} if draw(st.integers(0, 9)) == 0 else {}
    headers["Accept"] = draw(st.sampled_from(["image/avif,image/webp,*/*", "*/*", "", "x" * 40]))
    return url, headers


@settings(max_examples=int(os.environ.get("HTTP_EXAMPLES", "50")))
@given(delivery_urls())
def test_any_delivery_url_is_an_image_a_304_or_a_json_4xx_never_a_5xx(app_client, case):
    url, headers = case
    r = app_client.get(url, headers=headers)
    param = r.json()["error"].get("param") if r.status_code >= 400 else ""
    event(f"status {r.status_code} {param}")
    if r.status_code in (200, 304):
        return
    assert 400 <= r.status_code < 500, (url, r.status_code, r.text)
    assert r.headers["content-type"].startswith("application/json"), (url, r.headers)
    error = r.json()["error"]
    assert error["code"] and error["message"], (url, error)


@pytest.mark.parametrize("exp", ["1099511627776", "253402300800"])
def test_a_signed_url_with_an_exp_past_the_year_9999_is_a_400_not_a_500(app_client, exp):
    # Found by the property above: the Expires header of year 36812 overflowed datetime.
    r = app_client.get(signing.sign(f"/t/_/photo.jpg?w=10&exp={exp}", KEY))
    assert r.status_code == 400, r.text
    assert r.json()["error"]["param"] == "exp"
