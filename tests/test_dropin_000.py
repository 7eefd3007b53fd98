"""Seed 000 (SPEC §10): /api/v1/image-processing/{operation} and /image-processing over the
real app, real libvips and real photos: the seed's fields mapped onto the processing API's
ops, its binary and JSON answers, and its error envelope around imgcdn's codes."""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path
from typing import Any

import pytest
import pyvips
from conftest import AUTH, IMAGES, decode
from exif_blobs import CAMERA_EXIF, CAMERA_GPS, CAMERA_IFD0, build
from starlette.testclient import TestClient

PHOTO = (IMAGES / "photo.jpg").read_bytes()  # 800 x 600
P3 = (IMAGES / "p3.jpg").read_bytes()  # 400 x 300
SINGLE = "/api/v1/image-processing"


def api_key(client: TestClient) -> str:
    r = client.post("/v1/keys", json={"name": "seed000"}, headers=AUTH)
    assert r.status_code == 201, r.text
    secret: str = r.json()["key"]
    return secret


@pytest.fixture
def key(client: TestClient) -> str:
    return api_key(client)


def post(client: TestClient, key: str, operation: str, data: bytes | None = PHOTO, **form: Any):
    files = {"image": ("photo.jpg", data, "image/jpeg")} if data is not None else None
    fields = {k: str(v).lower() if isinstance(v, bool) else str(v) for k, v in form.items()}
    return client.post(f"{SINGLE}/{operation}?api_key={key}", files=files, data=fields)


def phone_photo() -> bytes:
    """photo.jpg shrunk, carrying a phone's EXIF: camera, times and a GPS position."""
    image = pyvips.Image.thumbnail(str(IMAGES / "photo.jpg"), 320).copy()
    image.set_type(
        pyvips.GValue.blob_type, "exif-data", build(CAMERA_IFD0, CAMERA_EXIF, CAMERA_GPS)
    )
    body: bytes = image.jpegsave_buffer(keep="exif")
    return body


def results_stored(client: TestClient) -> list[Path]:
    folder = client.app.state.runtime.settings.data_dir / "objects" / "results"  # type: ignore[attr-defined]
    return [p for p in folder.rglob("*") if p.is_file()]


def test_resize_answers_the_image_bytes_with_the_seeds_headers(client, key):
    r = post(client, key, "resize", width=800, height=600)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "image/jpeg"
    assert r.headers["x-processing-time"].removesuffix("ms").isdigit()
    assert re.fullmatch(r"[0-9a-f]{32}", r.headers["x-correlation-id"])
    assert r.headers.get_list("x-correlation-id") == [r.headers["x-correlation-id"]]
    assert int(r.headers["content-length"]) == len(r.content)
    image = decode(r.content)
    assert (image.width, image.height) == (800, 600)


def test_the_clients_correlation_id_is_echoed(client, key):
    files = {"image": ("p.jpg", P3, "image/jpeg")}
    r = client.post(
        f"{SINGLE}/resize?api_key={key}",
        files=files,
        data={"width": "100"},
        headers={"X-Correlation-ID": "order-42"},
    )
    assert r.status_code == 200 and r.headers.get_list("x-correlation-id") == ["order-42"]


def test_width_alone_keeps_the_aspect_and_both_sides_give_exactly_that_box(client, key):
    assert decode(post(client, key, "resize", P3, width=200).content).height == 150
    both = decode(post(client, key, "resize", P3, width=100, height=100).content)
    assert (both.width, both.height) == (100, 100)


def test_crop_cuts_the_box_at_x_y_out_of_the_source(client, key):
    r = post(client, key, "crop", P3, x=100, y=50, width=120, height=80, format="png")
    assert r.status_code == 200, r.text
    cut = decode(r.content)
    expected = pyvips.Image.new_from_buffer(P3, "").crop(100, 50, 120, 80)
    assert (cut.width, cut.height) == (120, 80)
    assert abs(cut.avg() - expected.avg()) < 2


def test_convert_changes_the_format_and_compress_at_a_lower_quality_is_smaller(client, key):
    webp = post(client, key, "convert", P3, format="webp")
    assert webp.headers["content-type"] == "image/webp" and decode(webp.content).width == 400
    default = post(client, key, "compress", P3)
    low = post(client, key, "compress", P3, quality=20)
    assert len(low.content) < len(default.content) < len(P3) * 2


def test_rotate_takes_the_angle_and_swaps_the_sides(client, key):
    turned = decode(post(client, key, "rotate", P3, angle=90).content)
    assert (turned.width, turned.height) == (300, 400)


def test_width_with_another_operation_resizes_first(client, key):
    r = post(client, key, "convert", P3, format="png", width=100)
    assert decode(r.content).width == 100 and r.headers["content-type"] == "image/png"


def test_the_json_form_has_the_seeds_fields_and_the_image_in_base64(client, key):
    r = post(client, key, "resize", phone_photo(), width=100, response="json")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["success"] is True and body["correlationId"] == r.headers["x-correlation-id"]
    assert isinstance(body["processingTime"], int) and body["timestamp"].endswith("Z")
    data = body["data"]
    image = decode(base64.b64decode(data["processed_image"]))
    assert (
        data["dimensions"]
        == {"width": image.width, "height": image.height}
        == {
            "width": 100,
            "height": 75,
        }
    )
    assert data["size_bytes"] == len(base64.b64decode(data["processed_image"]))
    assert data["format_info"]["format"] == "jpeg" and data["format_info"]["mime"] == "image/jpeg"
    assert data["quality_used"] == 80
    assert data["compression_ratio"] == round(data["original_size_bytes"] / data["size_bytes"], 3)
    groups = data["metadata"]
    assert set(groups) == {"basic", "camera", "location", "temporal", "device", "file"}
    assert groups["camera"]["make"] == "Google"
    assert groups["location"]["latitude"] == pytest.approx(-33.8588, abs=1e-3)


def test_accept_json_alone_asks_for_json_but_a_wildcard_keeps_the_bytes(client, key):
    files = {"image": ("p.jpg", P3, "image/jpeg")}
    url = f"{SINGLE}/resize?api_key={key}"
    json_only = client.post(
        url, files=files, data={"width": "50"}, headers={"Accept": "application/json"}
    )
    assert json_only.json()["success"] is True
    axios = "application/json, text/plain, */*"
    r = client.post(url, files=files, data={"width": "50"}, headers={"Accept": axios})
    assert r.headers["content-type"] == "image/jpeg"


def test_metadata_answers_the_groups_of_a_phone_photo(client, key):
    r = post(client, key, "metadata", phone_photo())
    assert r.status_code == 200, r.text
    data = r.json()["data"]
    assert data["dimensions"] == {"width": 320, "height": 240}
    assert data["format_info"]["mime"] == "image/jpeg"
    assert data["metadata"]["device"]["software"].startswith("HDR+")
    assert data["metadata"]["temporal"]["date_time_original"].startswith("2024-05-01T14:03:22")
    assert results_stored(client) == []  # metadata renders and keeps nothing


def test_preserve_exif_keeps_the_gps_and_the_default_strips_it(client, key):
    kept = post(client, key, "resize", phone_photo(), width=100, preserve_exif=True)
    stripped = post(client, key, "resize", phone_photo(), width=100)
    assert "exif-data" in decode(kept.content).get_fields()
    assert "exif-data" not in decode(stripped.content).get_fields()
    meta = post(client, key, "metadata", kept.content).json()["data"]["metadata"]
    assert meta["location"]["longitude"] == pytest.approx(151.2143, abs=1e-3)
    assert meta["basic"]["orientation"] == 1  # the pixels are upright: no tag to turn them


def test_progressive_writes_an_interlaced_jpeg(client, key):
    progressive = decode(post(client, key, "resize", P3, width=200, progressive=True).content)
    baseline = decode(post(client, key, "resize", P3, width=200).content)
    assert progressive.get("interlaced") == 1
    assert "interlaced" not in baseline.get_fields() or baseline.get("interlaced") == 0


def test_the_pipeline_runs_its_operations_in_order_from_json(client, key):
    body = {
        "image": base64.b64encode(P3).decode(),
        "operations": [
            {"operation": "crop", "x": 0, "y": 0, "width": 200, "height": 300},
            {"type": "rotate", "params": {"angle": 90}},
            {"operation": "resize", "width": 150},
        ],
        "output": {"format": "webp", "quality": 60},
    }
    r = client.post(f"/image-processing?api_key={key}", json=body)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "image/webp" and r.headers["x-processing-time"]
    image = decode(r.content)
    assert (image.width, image.height) == (150, 100)


def test_the_pipeline_takes_a_multipart_image_with_operations_as_json_text(client, key):
    form = {
        "operations": json.dumps([{"operation": "flip", "direction": "horizontal"}]),
        "output": json.dumps({"format": "png", "response": "json"}),
    }
    files = {"image": ("p.jpg", P3, "image/jpeg")}
    r = client.post(f"/image-processing?api_key={key}", files=files, data=form)
    assert r.status_code == 200, r.text
    data = r.json()["data"]
    assert data["operations"] == ["flip"] and data["format_info"]["format"] == "png"
    flipped = decode(base64.b64decode(data["processed_image"]))
    mirrored = pyvips.Image.new_from_buffer(P3, "").fliphor()
    assert (
        abs(flipped.extract_area(0, 0, 50, 50).avg() - mirrored.extract_area(0, 0, 50, 50).avg())
        < 3
    )


def test_an_idempotency_key_replays_the_first_answer(client, key):
    files = {"image": ("p.jpg", P3, "image/jpeg")}
    url = f"{SINGLE}/resize?api_key={key}"
    headers = {"Idempotency-Key": "resize-1"}
    first = client.post(url, files=files, data={"width": "64"}, headers=headers)
    again = client.post(url, files=files, data={"width": "64"}, headers=headers)
    assert again.headers["idempotent-replayed"] == "true" and again.content == first.content
    assert again.headers["x-processing-time"] == first.headers["x-processing-time"]
    other = client.post(url, files=files, data={"width": "65"}, headers=headers)
    assert other.status_code == 422 and other.json()["error"] == "idempotency_key_reused"
    # Asking for the JSON form is another request, by the query or by Accept.
    as_json = client.post(
        f"{url}&response=json", files=files, data={"width": "64"}, headers=headers
    )
    assert as_json.status_code == 422
    accept = {**headers, "Accept": "application/json"}
    assert client.post(url, files=files, data={"width": "64"}, headers=accept).status_code == 422


def envelope(r: Any, status: int, code: str, param: str | None = None) -> dict[str, Any]:
    assert r.status_code == status, r.text
    body: dict[str, Any] = r.json()
    assert body["success"] is False and body["error"] == code and body["details"]
    assert body["correlationId"] == r.headers["x-correlation-id"]
    assert body["timestamp"].endswith("Z") and r.headers["cache-control"] == "no-store"
    if param is not None:
        assert body["param"] == param
    return body


def test_an_unknown_operation_is_404_naming_the_operations(client, key):
    body = envelope(post(client, key, "vectorize", P3), 404, "unknown_operation", "operation")
    assert "resize" in body["details"] and "metadata" in body["details"]


@pytest.mark.parametrize(
    ("case", "status", "code", "param"),
    [
        ("no key", 401, "unauthorized", None),
        ("both sources", 400, "invalid_param", "image_url"),
        ("no source", 400, "invalid_param", "image"),
        ("quality 0", 400, "invalid_param", "quality"),
        ("quality 101", 400, "invalid_param", "quality"),
        ("not an image", 415, "unsupported_format", None),
        ("unknown field", 400, "invalid_param", "colour"),
        ("crop without a box", 400, "invalid_param", "height"),
    ],
)
def test_bad_input_is_the_seeds_envelope_with_imgcdns_code_and_nothing_stored(
    client, key, case, status, code, param
):
    url = f"{SINGLE}/resize?api_key={key}"
    image = {"image": ("p.jpg", P3, "image/jpeg")}
    if case == "no key":
        r = client.post(f"{SINGLE}/resize", files=image, data={"width": "10"})
    elif case == "both sources":
        r = client.post(url, files=image, data={"image_url": "https://example.com/a.jpg"})
    elif case == "no source":
        r = client.post(url, json={"width": 10})
    elif case.startswith("quality"):
        r = client.post(url, files=image, data={"width": "10", "quality": case.split()[1]})
    elif case == "not an image":
        r = client.post(
            url,
            files={"image": ("a.jpg", b"%PDF-1.4 not a jpeg" * 40, "image/jpeg")},
            data={"width": "10"},
        )
    elif case == "unknown field":
        r = client.post(url, files=image, data={"width": "10", "colour": "red"})
    else:
        r = client.post(f"{SINGLE}/crop?api_key={key}", files=image, data={"width": "10"})
    envelope(r, status, code, param)
    assert results_stored(client) == []


def test_an_oversized_image_is_413_in_the_envelope_and_nothing_is_stored(make_client):
    client = make_client(max_source_bytes=50_000)
    r = post(client, api_key(client), "resize", PHOTO, width=10)
    envelope(r, 413, "source_too_large")
    assert results_stored(client) == []


def test_a_pipeline_step_error_names_the_step_and_field_as_sent(client, key):
    body = {
        "image": base64.b64encode(P3).decode(),
        "operations": [{"operation": "resize", "width": 10}, {"operation": "resize", "width": -5}],
    }
    r = client.post(f"/image-processing?api_key={key}", json=body)
    envelope(r, 400, "invalid_param", "operations[1].width")
    r = client.post(
        f"/image-processing?api_key={key}", json={**body, "operations": [{"operation": "explode"}]}
    )
    envelope(r, 400, "invalid_param", "operations[0].operation")
    # A step's quality is the seed's 1..100 too, as at the top level and in output.
    step = {"operation": "compress", "quality": 0}
    r = client.post(f"/image-processing?api_key={key}", json={**body, "operations": [step]})
    envelope(r, 400, "invalid_param", "operations[0].quality")
    assert results_stored(client) == []


@pytest.mark.parametrize("operation", ["resize", "convert", "rotate", "crop", "flip"])
def test_quality_is_every_operations_and_sets_the_encoding(client, key, operation):
    fields = {
        "resize": {"width": 200},
        "convert": {"format": "webp"},
        "rotate": {"angle": 90},
        "crop": {"width": 200, "height": 150},
        "flip": {"direction": "h"},
    }[operation]
    high = post(client, key, operation, P3, quality=95, **fields)
    low = post(client, key, operation, P3, quality=20, **fields)
    assert (high.status_code, low.status_code) == (200, 200), low.text
    assert len(low.content) < len(high.content) / 2
