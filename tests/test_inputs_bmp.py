"""BMP sources: libvips has no BMP loader, so Pillow decodes them after our own header check."""

from __future__ import annotations

import base64
import time

import pytest
from conftest import AUTH, IMAGES, error_body
from inputs import bmp, difference, photo_as, pil_bytes, put, render, rle8
from PIL import Image


def test_a_24_bit_bmp_uploads_and_is_delivered_like_the_jpeg_it_was_made_from(client):
    r = put(client, "p.bmp", photo_as("BMP"))
    put(client, "p.jpg", (IMAGES / "photo.jpg").read_bytes())

    assert r.status_code == 201, r.text
    assert (r.json()["mime"], r.json()["width"], r.json()["height"]) == ("image/bmp", 800, 600)
    out = render(client, "p.bmp")
    assert (out.width, out.height) == (100, 75)
    assert difference(out, render(client, "p.jpg")) < 4
    assert client.get("/t/_/p.bmp?w=50").headers["content-type"] == "image/jpeg"


@pytest.mark.parametrize("mode", ["P", "L", "1", "RGBA"])
def test_palette_grey_1_bit_and_32_bit_bmps_all_render(client, mode):
    with Image.open(IMAGES / "photo.jpg") as photo:
        data = pil_bytes(photo.convert(mode), "BMP")
    put(client, "p.jpg", (IMAGES / "photo.jpg").read_bytes())

    assert put(client, f"p-{mode}.bmp", data).status_code == 201
    out = render(client, f"p-{mode}.bmp")
    assert (out.width, out.height) == (100, 75)
    if mode in ("P", "RGBA"):  # the colours survive; grey and 1-bit only the picture
        assert difference(out, render(client, "p.jpg")) < 6


def test_a_top_down_bmp_renders_the_same_way_up_as_a_bottom_up_one(client):
    # A 2x2 raster: bottom-up stores the bottom row first, top-down the top row first.
    red, blue = b"\0\0\xff", b"\xff\0\0"
    row_red, row_blue = red * 2 + b"\0\0", blue * 2 + b"\0\0"  # rows padded to 4 bytes
    put(client, "up.bmp", bmp(2, 2, raster=row_blue + row_red))  # red on top
    put(client, "down.bmp", bmp(2, -2, raster=row_red + row_blue))  # red on top

    for name in ("up.bmp", "down.bmp"):
        out = render(client, name, "fmt=png")
        assert out(0, 0)[:3] == [255, 0, 0]
        assert out(0, 1)[:3] == [0, 0, 255]


def test_an_rle8_bmp_decodes(client):
    palette = b"\0\0\xff\0" + b"\xff\0\0\0"  # index 0 red, 1 blue (BGRX)
    data = bmp(2, 2, bpp=8, compression=1, raster=rle8([b"\1\1", b"\0\0"]), palette=palette)

    assert put(client, "rle.bmp", data).status_code == 201
    out = render(client, "rle.bmp", "fmt=png")
    assert out(0, 0)[:3] == [255, 0, 0]


def test_a_bmp_declaring_2500_megapixels_is_a_413_from_its_header_before_any_decode(client):
    started = time.monotonic()

    r = put(client, "lie.bmp", bmp(50000, 50000, raster=bytes(4096)))

    assert "50000x50000" in error_body(r, 413)["message"]
    assert time.monotonic() - started < 2


def test_our_pixel_limit_applies_below_pillows_own_bomb_limit(make_client):
    client = make_client(max_source_pixels=10_000)

    r = put(client, "p.bmp", bmp(200, 200))  # 40 000 pixels: Pillow would not mind

    assert "200x200" in error_body(r, 413)["message"]


@pytest.mark.parametrize(
    ("bpp", "compression"),
    [(7, 0), (0, 0), (24, 1), (8, 2), (24, 3), (24, 4), (8, 5), (32, 9), (24, 0xFFFFFFFF)],
)
# (24, 1): RLE8 needs 8 bits; (8, 2): RLE4 needs 4; (24, 3): bitfields need 16 or 32;
# 4 and 5 are JPEG and PNG inside a BMP, which Pillow cannot decode.
def test_a_bmp_with_bogus_depth_or_compression_is_a_422(client, bpp, compression):
    data = bmp(4, 4, bpp=bpp, compression=compression, raster=bytes(256))

    body = error_body(put(client, "bad.bmp", data), 422)

    assert body["code"] == "undecodable"
    # Named by our header check, before Pillow (which would decode some of these anyway).
    assert f"{bpp} bits per pixel and compression {compression}," in body["message"]


@pytest.mark.parametrize("width", [0, -4])
def test_a_bmp_with_no_pixels_is_a_422(client, width):
    assert error_body(put(client, "empty.bmp", bmp(width, 4, raster=b"")), 422)


def test_a_truncated_uncompressed_bmp_is_a_422_before_pillow_sees_it(client):
    whole = photo_as("BMP")

    r = put(client, "cut.bmp", whole[: len(whole) // 2])

    assert "bytes, the file has" in error_body(r, 422)["message"]


def test_a_truncated_rle_bmp_is_a_422_not_a_half_image(client):
    palette = b"\0\0\xff\0" * 2
    raster = rle8([b"\0" * 64] * 64)
    data = bmp(64, 64, bpp=8, compression=1, raster=raster, palette=palette)

    assert put(client, "rle.bmp", data).status_code == 201
    assert error_body(put(client, "cut.bmp", data[: len(data) - len(raster) // 2]), 422)


@pytest.mark.parametrize(
    "data",
    [
        b"BM" + b"\xff" * 64,  # not a header size we know: 415
        b"BM" + bytes(12) + (40).to_bytes(4, "little") + b"\xff" * 60,  # a header of junk
        b"BM" + bytes(12) + (124).to_bytes(4, "little"),  # a header cut short
        b"BMP is a format\n" * 8,
    ],
    ids=["bm-junk", "dib-junk", "dib-cut", "text"],
)
def test_bytes_that_start_like_a_bmp_but_are_junk_are_a_4xx_not_a_500(client, data):
    r = put(client, "junk.bmp", data)

    assert r.status_code in (415, 422), r.text
    assert client.get("/v1/assets/junk.bmp", headers=AUTH).status_code == 404


def test_post_names_a_bmp_upload_bmp(client):
    body = {"base64": base64.b64encode(bmp(4, 4)).decode()}

    r = client.post("/v1/assets", json=body, headers=AUTH)

    assert r.status_code == 201, r.text
    assert r.json()["id"].endswith(".bmp")
