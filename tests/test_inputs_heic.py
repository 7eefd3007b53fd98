"""HEIC (HEVC in HEIF) sources: decoded by pi-heif, uploaded and delivered like a JPEG."""

from __future__ import annotations

import base64
import gc
import struct
import time

import pytest
import pyvips
from conftest import AUTH, IMAGES, error_body
from inputs import difference, put, render

from server.errors import RenderTimeout
from server.imaging import decoders
from server.imaging.inspect import SourceLimits, check_decodes, probe, sniff
from server.imaging.vips import Cancel

ORIENT6 = (IMAGES / "orient6.heic").read_bytes()
LIMITS = SourceLimits(max_bytes=50 << 20, max_pixels=100_000_000, max_frames=256)


def with_ispe(data: bytes, width: int, height: int) -> bytes:
    """`data` with its (only) image spatial extents box rewritten: a lying header."""
    box = data.index(b"ispe")
    return data[: box + 8] + struct.pack(">II", width, height) + data[box + 16 :]


def test_a_phone_heic_uploads_upright_once_not_turned_twice(client):
    # Coded sideways with an irot box AND EXIF Orientation 6, as phones write it.
    r = put(client, "o.heic", ORIENT6)

    assert r.status_code == 201, r.text
    assert (r.json()["mime"], r.json()["width"], r.json()["height"]) == ("image/heic", 426, 640)


def test_a_heic_is_delivered_upright_and_looks_like_the_jpeg_of_the_same_photo(client):
    put(client, "o.heic", ORIENT6)
    put(client, "o.jpg", (IMAGES / "orient6.jpg").read_bytes())

    heic, jpeg = render(client, "o.heic"), render(client, "o.jpg")

    assert (heic.width, heic.height) == (100, 150)
    assert heic.get("vips-loader") == "jpegload_buffer"
    assert difference(heic, jpeg) < 4
    assert difference(heic, jpeg.flip("vertical")) > 20  # the check can tell turned images


def test_a_heic_defaults_to_jpeg_and_one_with_alpha_to_png(client):
    put(client, "o.heic", ORIENT6)
    put(client, "a.heic", (IMAGES / "alpha.heic").read_bytes())
    put(client, "a.png", (IMAGES / "alpha.png").read_bytes())

    assert client.get("/t/_/o.heic?w=50").headers["content-type"] == "image/jpeg"
    r = client.get("/t/_/a.heic?w=100")
    assert r.headers["content-type"] == "image/png"
    alpha = pyvips.Image.new_from_buffer(r.content, "")
    assert alpha.hasalpha()
    png = render(client, "a.png", "w=100&fmt=png")
    assert abs(alpha[3].avg() - png[3].avg()) < 4  # the same cut-out, not opaque
    assert difference(alpha, png) < 10


def test_a_multi_image_heic_renders_its_primary_image_not_image_0(client):
    put(client, "m.heic", (IMAGES / "multi.heic").read_bytes())
    put(client, "p.jpg", (IMAGES / "photo.jpg").read_bytes())

    heic, jpeg = render(client, "m.heic"), render(client, "p.jpg")

    assert (heic.width, heic.height) == (100, 75)  # image 0 is 200x133
    assert difference(heic, jpeg) < 4


def test_the_pixel_limit_counts_the_primary_image_even_when_image_0_is_small(make_client):
    client = make_client(max_source_pixels=1_000_000)
    r = put(client, "big.heic", (IMAGES / "big-primary.heic").read_bytes())  # 64x48 + 4000x3000

    assert "4000x3000" in error_body(r, 413)["message"]


def test_a_heic_declaring_900_megapixels_is_a_413_from_its_header_before_any_decode(client):
    lying = with_ispe(ORIENT6, 30000, 30000)
    started = time.monotonic()

    r = put(client, "lie.heic", lying)

    assert "30000x30000" in error_body(r, 413)["message"]
    assert time.monotonic() - started < 2
    assert client.get("/v1/assets/lie.heic", headers=AUTH).status_code == 404


@pytest.mark.parametrize("keep", [0, 12, 100, 2000, len(ORIENT6) // 2], ids=str)
def test_a_truncated_heic_is_refused_with_a_4xx_and_not_stored(client, keep):
    r = put(client, "cut.heic", ORIENT6[:keep])

    assert 400 <= r.status_code < 500, r.text
    assert client.get("/v1/assets/cut.heic", headers=AUTH).status_code == 404


def test_a_heic_header_over_junk_is_a_422_not_a_500(client):
    polyglot = ORIENT6[:32] + b"\x00" * 5000

    assert error_body(put(client, "junk.heic", polyglot), 422)["code"] == "undecodable"


@pytest.mark.parametrize(("width", "height"), [(0, 0), (10, 10), (6000, 6000)])
def test_a_heic_whose_header_lies_within_the_limit_is_a_422_on_decode(client, width, height):
    r = put(client, "lie.heic", with_ispe(ORIENT6, width, height))

    assert "\n" not in error_body(r, 422)["message"]


def test_post_names_a_heic_upload_heic_and_an_avif_upload_avif(client):
    avif = pyvips.Image.new_from_file(str(IMAGES / "photo.jpg")).heifsave_buffer(
        compression="av1", Q=30
    )
    for data, ext, mime in [(ORIENT6, "heic", "image/heic"), (avif, "avif", "image/avif")]:
        body = {"base64": base64.b64encode(data).decode()}
        r = client.post("/v1/assets", json=body, headers=AUTH)
        assert r.status_code == 201, r.text
        assert r.json()["id"].endswith(f".{ext}")
        assert r.json()["mime"] == mime


@pytest.mark.parametrize(
    ("brands", "kind"),
    [
        (b"heic\0\0\0\0mif1heic", "heic"),
        (b"mif1\0\0\0\0mif1heic", "heic"),
        (b"heix\0\0\0\0mif1", "heic"),
        (b"avif\0\0\0\0mif1miaf", "heif"),
        (b"mif1\0\0\0\0mif1avif", "heif"),
    ],
)
def test_sniff_tells_hevc_heif_from_avif_by_its_brands(brands, kind):
    ftyp = struct.pack(">I", 8 + len(brands)) + b"ftyp" + brands

    assert sniff(ftyp + bytes(64)) == kind


def test_a_generic_heif_brand_is_told_apart_by_its_codec_box():
    generic = ORIENT6[:8] + b"mif1" + ORIENT6[12:]
    generic = generic.replace(b"heic", b"miaf")  # no brand says HEVC any more

    assert sniff(generic) == "heic"  # the hvcC box does
    assert probe(generic, LIMITS).kind == "heic"


def test_a_heic_header_is_read_without_decoding_pixels():
    started = time.perf_counter()
    head = decoders.heic_header((IMAGES / "big-primary.heic").read_bytes(), None)
    elapsed = time.perf_counter() - started

    assert (head.width, head.height, head.images) == (4000, 3000, 2)
    assert elapsed < 0.05  # a 12 MP decode takes ~0.2 s or more


def test_a_heic_decode_that_outlived_the_render_timeout_is_not_used():
    # pi-heif cannot be interrupted: the decode runs to its end, then the render stops.
    data = (IMAGES / "big-primary.heic").read_bytes()
    info = probe(data, LIMITS)
    cancel = Cancel()
    cancel.kill()  # what the pool does at the timeout, here before the decode ends

    with pytest.raises(RenderTimeout):
        check_decodes(data, info, cancel)


def test_a_decoded_heic_keeps_its_pixels_after_pi_heif_has_freed_its_own():
    multi = (IMAGES / "multi.heic").read_bytes()
    expected = decoders.decode(multi, "heic").copy_memory().avg()

    image = decoders.decode(multi, "heic")  # lazy: libvips reads the pixels later
    gc.collect()
    for _ in range(3):  # reuse the memory libheif freed
        decoders.decode(ORIENT6, "heic").copy_memory()

    assert image.avg() == pytest.approx(expected)
