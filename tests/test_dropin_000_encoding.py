"""The encoding params seed 000 brought to the engine, through the processing API itself:
`progressive` and `keep_metadata` on /v1/image/{op} and in /v1/image/process steps."""

from __future__ import annotations

import base64

import pyvips
from conftest import AUTH, IMAGES, decode
from exif_blobs import CAMERA_EXIF, CAMERA_GPS, CAMERA_IFD0, build

from server.imaging.exif import parse
from server.imaging.metadata import location


def phone_photo() -> str:
    image = pyvips.Image.thumbnail(str(IMAGES / "orient6.jpg"), 200).copy()
    image.set_type(
        pyvips.GValue.blob_type, "exif-data", build(CAMERA_IFD0, CAMERA_EXIF, CAMERA_GPS)
    )
    return base64.b64encode(image.jpegsave_buffer(keep="exif")).decode()


def binary(client, path: str, body: dict[str, object]) -> pyvips.Image:
    r = client.post(path, json={**body, "output": {"return": "binary"}}, headers=AUTH)
    assert r.status_code == 200, r.text
    return decode(r.content)


def test_convert_writes_a_progressive_jpeg_only_when_asked(client):
    image = {"image": {"base64": phone_photo()}, "format": "jpeg"}
    assert (
        binary(client, "/v1/image/convert", {**image, "progressive": True}).get("interlaced") == 1
    )
    plain = binary(client, "/v1/image/convert", image)
    assert "interlaced" not in plain.get_fields() or plain.get("interlaced") == 0


def test_keep_metadata_keeps_the_gps_in_a_process_step_and_the_default_strips_it(client):
    steps = [{"op": "resize", "params": {"width": 80}}]
    body = {"image": {"base64": phone_photo()}, "ops": steps}
    kept = binary(
        client,
        "/v1/image/process",
        {
            **body,
            "ops": [*steps, {"op": "convert", "params": {"format": "webp", "keep_metadata": True}}],
        },
    )
    assert location(parse(kept.get("exif-data")))["latitude"] < -33
    stripped = binary(client, "/v1/image/process", body)
    assert "exif-data" not in stripped.get_fields()


def test_a_kept_exif_says_upright_for_the_upright_pixels(client):
    sideways = base64.b64encode((IMAGES / "orient6.jpg").read_bytes()).decode()  # EXIF 6
    body = {"image": {"base64": sideways}, "width": 60, "keep_metadata": True}
    kept = binary(client, "/v1/image/resize", body)
    assert (kept.width, kept.height) == (60, 90)  # upright: 399 x 600 as seen
    assert "exif-data" in kept.get_fields()
    assert "orientation" not in kept.get_fields() or kept.get("orientation") == 1
