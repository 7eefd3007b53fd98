"""TIFF sources: libvips' tiffload, page 0 only, every size checked from the header first."""

from __future__ import annotations

import base64
import time

import pytest
import pyvips
from conftest import AUTH, IMAGES, error_body
from inputs import difference, photo_as, put, render, tiff
from PIL import Image

from server.imaging.inspect import SourceLimits, probe

LIMITS = SourceLimits(max_bytes=50 << 20, max_pixels=100_000_000, max_frames=256)


@pytest.mark.parametrize("compression", ["tiff_lzw", "tiff_adobe_deflate", "jpeg", "raw"])
def test_a_tiff_uploads_and_is_delivered_like_the_jpeg_it_was_made_from(client, compression):
    r = put(client, "p.tif", photo_as("TIFF", compression=compression))
    put(client, "p.jpg", (IMAGES / "photo.jpg").read_bytes())

    assert r.status_code == 201, r.text
    assert (r.json()["mime"], r.json()["width"], r.json()["height"]) == ("image/tiff", 800, 600)
    out = render(client, "p.tif")
    assert (out.width, out.height) == (100, 75)
    assert difference(out, render(client, "p.jpg")) < 4
    assert client.get("/t/_/p.tif?w=50").headers["content-type"] == "image/jpeg"


def test_a_tiff_with_an_orientation_tag_is_delivered_upright(client):
    sideways = pyvips.Image.new_from_file(str(IMAGES / "orient6.jpg"))  # orientation 6 kept
    put(client, "o.jpg", (IMAGES / "orient6.jpg").read_bytes())

    r = put(client, "o.tif", sideways.tiffsave_buffer(compression="lzw"))

    assert (r.json()["width"], r.json()["height"]) == (399, 600)
    out = render(client, "o.tif")
    assert (out.width, out.height) == (100, 150)
    assert difference(out, render(client, "o.jpg")) < 4


def test_a_16_bit_tiff_with_alpha_is_delivered_as_an_8_bit_png(client):
    image = pyvips.Image.new_from_file(str(IMAGES / "alpha.png"))
    deep = image.colourspace("rgb16")

    put(client, "deep.tif", deep.tiffsave_buffer())
    r = client.get("/t/_/deep.tif?w=100")

    assert r.headers["content-type"] == "image/png"
    out = pyvips.Image.new_from_buffer(r.content, "")
    assert (out.bands, out.format) == (4, "uchar")
    png = render(client, "deep.tif", "w=100&fmt=png")
    assert difference(out, png) == 0
    assert abs(out[3].avg() - image.resize(100 / image.width)[3].avg()) < 4


def test_a_multi_page_tiff_renders_page_0_only(client):
    others = [Image.new("RGB", (3000, 3000), "red") for _ in range(3)]
    data = photo_as("TIFF", compression="tiff_lzw", save_all=True, append_images=others)
    put(client, "p.jpg", (IMAGES / "photo.jpg").read_bytes())

    r = put(client, "pages.tif", data)

    assert (r.json()["width"], r.json()["height"]) == (800, 600)
    out = render(client, "pages.tif")
    assert (out.width, out.height) == (100, 75)
    assert difference(out, render(client, "p.jpg")) < 4
    assert probe(data, LIMITS).frames == 1  # pages are not frames: no animation, no n=-1


def test_a_tiff_with_more_pages_than_the_frame_limit_is_a_413(client):
    r = put(client, "pages.tif", tiff(8, 8, pages=300, data=bytes(192)))

    assert "300 pages" in error_body(r, 413)["message"]


def test_a_tiff_declaring_40_gigapixels_is_a_413_from_its_header_before_any_decode(client):
    started = time.monotonic()

    r = put(client, "lie.tif", tiff(200000, 200000))  # 198 bytes; decoding takes ~50 s

    assert "200000x200000" in error_body(r, 413)["message"]
    assert time.monotonic() - started < 2


def test_a_tiff_with_64_bands_is_refused_by_its_decoded_bytes_not_its_pixels(make_client):
    client = make_client(max_source_pixels=1_000_000)
    started = time.monotonic()

    r = put(client, "wide.tif", tiff(1000, 1000, spp=64))  # 1 MP, but 64 MB decoded

    assert "decodes to 64000000 bytes" in error_body(r, 413)["message"]
    assert time.monotonic() - started < 2


def test_a_pixel_bomb_tiff_under_the_byte_limit_is_refused_by_pixels(make_client):
    client = make_client(max_source_pixels=1_000_000)

    r = put(client, "bomb.tif", pyvips.Image.black(2000, 1000).tiffsave_buffer(compression="lzw"))

    assert "2000x1000" in error_body(r, 413)["message"]


@pytest.mark.parametrize("fraction", [0.1, 0.5, 0.9])
def test_a_truncated_tiff_is_a_422_and_not_stored(client, fraction):
    whole = photo_as("TIFF", compression="tiff_lzw")

    r = put(client, "cut.tif", whole[: int(len(whole) * fraction)])

    assert error_body(r, 422)["code"] == "undecodable"
    assert client.get("/v1/assets/cut.tif", headers=AUTH).status_code == 404


@pytest.mark.parametrize(
    "data",
    [
        b"II*\0" + b"\xff" * 64,
        b"MM\0*" + bytes(4),
        b"II*\0",
        b"II*\0" + bytes(4) + b"BM" * 40,
        tiff(0, 8),
    ],
    ids=["junk-ifd", "ifd-at-0", "magic-only", "polyglot", "zero-width"],
)
def test_bytes_that_start_like_a_tiff_but_are_junk_are_a_422_not_a_500(client, data):
    r = put(client, "junk.tif", data)

    assert error_body(r, 422)["code"] == "undecodable"
    assert client.get("/v1/assets/junk.tif", headers=AUTH).status_code == 404


def test_post_names_a_tiff_upload_tif(client):
    body = {"base64": base64.b64encode(tiff(4, 4, data=bytes(48))).decode()}

    r = client.post("/v1/assets", json=body, headers=AUTH)

    assert r.status_code == 201, r.text
    assert r.json()["id"].endswith(".tif")
