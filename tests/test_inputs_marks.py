"""An upload in any input format can be a template's watermark, as a PNG can."""

from __future__ import annotations

import pytest
import pyvips
from conftest import AUTH, IMAGES
from inputs import bmp, put, tiff

WHITE_BMP = bmp(8, 8, raster=b"\xff" * 32 * 8)  # 8 rows of 24 bytes + padding to 32
WHITE_TIFF = tiff(8, 8, data=b"\xff" * 192)


def corner(body: bytes) -> float:
    """Mean of the bottom-right 20x20, where a `se` mark with no margin lands."""
    image = pyvips.Image.new_from_buffer(body, "")
    return float(image.crop(image.width - 20, image.height - 20, 20, 20).avg())


@pytest.mark.parametrize(
    ("name", "data"),
    [
        ("mark.heic", (IMAGES / "orient6.heic").read_bytes()),
        ("mark.bmp", WHITE_BMP),
        ("mark.tif", WHITE_TIFF),
    ],
)
def test_a_heic_bmp_or_tiff_upload_is_drawn_as_a_template_watermark(client, name, data):
    put(client, "photo.jpg", (IMAGES / "photo.jpg").read_bytes())
    assert put(client, name, data).status_code == 201
    mark = {"asset": name, "position": "se", "opacity": 1, "scale": 0.2, "margin": 0}
    body = {"params": {"w": 200, "fmt": "png", "wm": mark}, "public": True}
    assert client.put("/v1/templates/marked", json=body, headers=AUTH).status_code == 201

    marked = client.get("/t/marked/photo.jpg")
    plain = client.get("/t/_/photo.jpg?w=200&fmt=png")

    assert marked.status_code == 200, marked.text
    assert abs(corner(marked.content) - corner(plain.content)) > 20
