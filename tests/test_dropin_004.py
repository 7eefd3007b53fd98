"""Seed 004 (AILabTools image cropping, SPEC §10): POST /api/image/editing/image-cropping over
the real app and a real `imgcdn serve`, on real images: the seed's envelope, the box filled
exactly, retain_location checked against the pixels, the 24 h URL, and the bad inputs."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx2 as httpx
import jsonschema
import numpy as np
import pytest
import pyvips
from conftest import IMAGES, TOKEN, decode
from inputs import pil_bytes
from PIL import Image
from starlette.testclient import TestClient
from test_server import Served, serving

from server import results_sweep
from server.routes import cropping

PATH = "/api/image/editing/image-cropping"
KEY = {"ailabapi-api-key": TOKEN}
RED = (200, 30, 30)
# The seed's "Response Example": every key an AILabTools client reads.
SEED_EXAMPLE = {
    "request_id": "",
    "log_id": "",
    "error_code": 0,
    "error_msg": "",
    "error_detail": {"status_code": 200, "code": "", "code_message": "", "message": ""},
    "data": {"url": "", "retain_location": {"width": 0, "height": 0, "y": 0, "x": 0}},
}


def shape(value: Any) -> Any:
    """The keys of a JSON value, recursively, values replaced by their types."""
    if isinstance(value, dict):
        return {k: shape(v) for k, v in value.items()}
    return type(value).__name__


def post(client: TestClient, data: bytes, name: str = "in.jpg", **fields: object) -> Any:
    form = {k: str(v) for k, v in fields.items()}
    return client.post(PATH, data=form, files={"image": (name, data)}, headers=KEY)


def stored(data_dir: Path) -> list[Path]:
    """The result files in the local storage (objects/results/<id[:2]>/<id>.bin|json)."""
    folder = data_dir / "objects" / "results"
    return [p for p in folder.rglob("*") if p.is_file()] if folder.exists() else []


def solid(width: int, height: int, fmt: str, colour: tuple[int, int, int] = RED) -> bytes:
    """A flat RGB image, 3 channels as the seed asks, in `fmt` (a Pillow format name)."""
    return pil_bytes(Image.new("RGB", (width, height), colour), fmt)


def fetch(client: TestClient, url: str) -> pyvips.Image:
    parts = urlsplit(url)
    r = client.get(f"{parts.path}?{parts.query}")
    assert r.status_code == 200, r.text
    return decode(r.content)


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    with serving(tmp_path_factory.mktemp("seed004")) as s:
        yield s


def test_the_seeds_request_over_imgcdn_serve_answers_the_seeds_envelope(served: Served) -> None:
    key = served.new_key("seed-004")
    photo = (IMAGES / "photo.jpg").read_bytes()
    # The seed's request as its sample code sends it: only the base URL and key changed.
    r = httpx.post(
        f"{served.base}{PATH}",
        headers={"ailabapi-api-key": key},
        files={"image": ("photo.jpg", photo, "image/jpeg")},
        data={"width": "400", "height": "400"},
        timeout=30,
    )
    assert r.status_code == 200, r.text
    answer = r.json()
    assert shape(answer) == {**shape(SEED_EXAMPLE), "request_id": "str", "log_id": "str"}
    assert answer["error_code"] == 0 and answer["request_id"] == r.headers["x-correlation-id"]
    assert answer["data"]["retain_location"] == {"width": 400, "height": 300, "y": 50, "x": 0}
    image = decode(httpx.get(answer["data"]["url"], timeout=10).content)
    assert (image.width, image.height) == (400, 400)
    expires = int(parse_qs(urlsplit(answer["data"]["url"]).query)["exp"][0])
    assert abs(expires - (time.time() + 24 * 3600)) < 60
    assert "Traceback" not in served.log()


@pytest.mark.parametrize(
    ("fmt", "size", "box"),
    [
        ("JPEG", (300, 100), (200, 200)),
        ("PNG", (100, 300), (300, 150)),
        ("BMP", (50, 40), (500, 200)),
    ],
)
def test_retain_location_is_where_the_pixels_of_the_image_are(
    client: TestClient, fmt: str, size: tuple[int, int], box: tuple[int, int]
) -> None:
    r = post(client, solid(*size, fmt), width=box[0], height=box[1])
    assert r.status_code == 200, r.text
    loc = r.json()["data"]["retain_location"]
    image = fetch(client, r.json()["data"]["url"])
    assert (image.width, image.height) == box
    pixels = image.numpy().astype(float)
    # A lossless PNG is exact to a pixel; JPEG's 8x8 blocks smear the edge a little.
    m = 1 if fmt == "PNG" else 8
    top, left, bottom, right = loc["y"], loc["x"], loc["y"] + loc["height"], loc["x"] + loc["width"]
    inside = np.zeros(box[::-1], dtype=bool)
    inside[top + m : bottom - m, left + m : right - m] = True
    outside = np.ones(box[::-1], dtype=bool)
    outside[max(0, top - m) : bottom + m, max(0, left - m) : right + m] = False
    assert inside.any() and outside.any()
    # The image area is the source's red; the padding is transparent for a PNG, else white
    # (a BMP answers a JPEG, the engine's default for a kind browsers do not show).
    assert abs(pixels[inside][:, 0].mean() - 200) < 4 and pixels[inside][:, 1].mean() < 40
    if fmt == "PNG":
        assert image.bands == 4 and pixels[outside][:, 3].max() == 0
        assert pixels[inside][:, 3].min() == 255
    else:
        assert pixels[outside].min() > 245
    # Scaled to fit: one side of the box is filled, the other centred.
    assert loc["width"] == box[0] or loc["height"] == box[1]
    assert loc["x"] == (box[0] - loc["width"]) // 2 and loc["y"] == (box[1] - loc["height"]) // 2


def error_of(r: Any, status: int) -> dict[str, Any]:
    """The seed's envelope of an error: error_code and status_code are the HTTP status."""
    assert r.status_code == status, r.text
    answer = r.json()
    assert answer["error_code"] == status and answer["error_detail"]["status_code"] == status
    assert answer["error_msg"] == answer["error_detail"]["message"] != ""
    assert "data" not in answer and answer["request_id"] == r.headers["x-correlation-id"]
    detail: dict[str, Any] = answer["error_detail"]
    return detail


def test_a_request_without_the_key_is_a_401_in_the_seeds_envelope(client: TestClient) -> None:
    r = client.post(PATH, data={"width": "10", "height": "10"}, files={"image": ("a", b"x")})
    assert error_of(r, 401)["code"] == "unauthorized"


@pytest.mark.parametrize(
    ("data", "fields", "status", "code", "param"),
    [
        (b"not an image at all", {"width": 10, "height": 10}, 415, "unsupported_format", "image"),
        (
            (IMAGES / "anim.gif").read_bytes(),
            {"width": 10, "height": 10},
            415,
            "unsupported_format",
            "image",
        ),
        (
            pil_bytes(Image.new("RGB", (2000, 10)), "PNG"),
            {"width": 10, "height": 10},
            413,
            "source_too_large",
            "image",
        ),
        (
            b"\xff\xd8\xff" + bytes(cropping.MAX_BYTES),
            {"width": 10, "height": 10},
            413,
            "source_too_large",
            None,
        ),
        (solid(10, 10, "PNG"), {"width": 10}, 400, "invalid_param", "height"),
        (solid(10, 10, "PNG"), {"width": 0, "height": 10}, 400, "invalid_param", "width"),
        (solid(10, 10, "PNG"), {"width": "wide", "height": 10}, 400, "invalid_param", "width"),
        (
            solid(10, 10, "PNG"),
            {"width": 10, "height": 10, "mode": 1},
            400,
            "invalid_param",
            "mode",
        ),
    ],
)
def test_bad_input_is_answered_in_the_seeds_envelope_and_nothing_is_stored(
    client: TestClient,
    settings: Any,
    data: bytes,
    fields: dict[str, object],
    status: int,
    code: str,
    param: str | None,
) -> None:
    detail = error_of(post(client, data, **fields), status)
    assert detail["code"] == code and detail.get("param") == param
    assert stored(settings.data_dir) == []


def test_a_json_body_is_a_415_the_seed_takes_multipart_only(client: TestClient) -> None:
    r = client.post(PATH, json={"width": 10, "height": 10}, headers=KEY)
    assert error_of(r, 415)["code"] == "unsupported_media_type"
    assert "multipart/form-data" in r.json()["error_msg"]
    assert "send a JSON object" not in r.json()["error_msg"]  # the advice of JSON endpoints


def test_a_grey_or_transparent_image_is_converted_not_refused(client: TestClient) -> None:
    # The seed asks for RGB 3-channel; imgcdn converts instead (docs/migrating/...).
    grey = pil_bytes(Image.new("L", (40, 20), 128), "PNG")
    r = post(client, grey, width=20, height=20)
    assert r.status_code == 200, r.text
    assert r.json()["data"]["retain_location"] == {"width": 20, "height": 10, "y": 5, "x": 0}
    r = post(client, (IMAGES / "alpha.png").read_bytes(), width=100, height=100)
    assert fetch(client, r.json()["data"]["url"]).bands == 4


def call(client: TestClient, fn: Any, *args: object) -> Any:
    assert client.portal is not None
    return client.portal.call(fn, client.app.state.runtime, *args)  # type: ignore[attr-defined]


def test_the_url_lives_24_hours_and_the_sweep_keeps_it_until_then(
    client: TestClient, settings: Any
) -> None:
    r = post(client, solid(30, 20, "JPEG"), width=10, height=10)
    url = r.json()["data"]["url"]
    assert fetch(client, url).width == 10
    now = time.time()
    # Past the default hour the sweep reads the result and keeps it; past 24 h it goes.
    assert call(client, results_sweep.sweep, now + 2 * 3600) == 0
    assert len(stored(settings.data_dir)) == 2
    assert call(client, results_sweep.sweep, now + 24 * 3600 + 120) == 1
    assert stored(settings.data_dir) == []


def test_a_result_first_made_for_an_hour_is_renewed_to_24_hours_when_asked_again(
    client: TestClient,
) -> None:
    data = solid(30, 20, "JPEG")
    # The same work through /v1/image/resize: one result, saved for IMGCDN_RESULT_TTL_S.
    first = client.post(
        "/v1/image/resize",
        data={
            "width": "10",
            "height": "10",
            "fit": "contain",
            "enlarge": "true",
            "background": "ffffff",
        },
        files={"image": ("a.jpg", data)},
        headers={"Authorization": f"Bearer {TOKEN}"},
    )
    assert first.status_code == 200, first.text
    assert first.json()["expires_at"] < time.time() + 3700
    r = post(client, data, width=10, height=10)
    expires = int(parse_qs(urlsplit(r.json()["data"]["url"]).query)["exp"][0])
    assert expires > time.time() + 23 * 3600
    # One result: the same input and work, its life pushed out to the seed's 24 hours.
    assert urlsplit(r.json()["data"]["url"]).path == urlsplit(first.json()["image_url"]).path


def test_the_openapi_document_describes_both_drop_ins_and_real_answers_match(
    client: TestClient,
) -> None:
    doc = client.get("/v1/openapi.json").json()
    crop = doc["paths"][PATH]["post"]["responses"]
    ok = post(client, solid(30, 20, "JPEG"), width=10, height=10)
    bad = post(client, b"nope", width=10, height=10)
    for r in (ok, bad):
        schema = crop[str(r.status_code)]["content"]["application/json"]["schema"]
        jsonschema.Draft202012Validator(schema).validate(r.json())
    compress = doc["paths"]["/api/v1/compress"]["post"]["responses"]
    r = client.post("/api/v1/compress", files={"file": ("a", b"x")})
    schema = compress["401"]["content"]["application/json"]["schema"]
    jsonschema.Draft202012Validator(schema).validate(r.json())
