"""server/imaging/watermark.py: parsing a template's `wm`, and the marks drawn on real pixels."""

from __future__ import annotations

from typing import Any

import pytest
import pyvips
from conftest import IMAGES, decode

from server.errors import ImgcdnError, InvalidParam
from server.imaging.inspect import SourceLimits, probe
from server.imaging.options import RenderOptions
from server.imaging.pipeline import render
from server.imaging.vips import Cancel
from server.imaging.watermark import POSITIONS, Watermark, apply, parse
from server.spec import Limits, parse_query

Box = tuple[int, int, int, int]  # left, top, width, height


def solid(width: int, height: int, colour: list[float]) -> pyvips.Image:
    """A uchar image of one colour: 1-2 bands are b-w, 3-4 are sRGB."""
    interpretation = "b-w" if len(colour) <= 2 else "srgb"
    base = pyvips.Image.black(width, height).cast("uchar")
    return base.new_from_image(colour).copy(interpretation=interpretation)


def white_mark(width: int = 40, height: int = 20) -> bytes:
    """An opaque white PNG: anywhere it lands turns white, so its footprint is exact."""
    return bytes(solid(width, height, [255, 255, 255]).pngsave_buffer())


def bbox(mask: pyvips.Image) -> Box | None:
    """The bounding box of the non-zero pixels of a one-band image."""
    columns, rows = mask.project()
    xs = [i for i, v in enumerate(columns.tolist()[0]) if v]
    ys = [i for i, row in enumerate(rows.tolist()) if row[0]]
    if not xs:
        return None
    return xs[0], ys[0], xs[-1] - xs[0] + 1, ys[-1] - ys[0] + 1


def changed(before: pyvips.Image, after: pyvips.Image, threshold: float = 0) -> pyvips.Image:
    """One band, 255 where any band moved by more than `threshold`."""
    moved = ((after.cast("int") - before.cast("int")).abs() > threshold).cast("uchar")
    return moved.bandor() if moved.bands > 1 else moved


def region(image: pyvips.Image, box: Box) -> pyvips.Image:
    return image.crop(*box)


def refused(raw: Any) -> InvalidParam:
    with pytest.raises(InvalidParam) as info:
        parse(raw)
    assert info.value.status == 400
    assert info.value.code == "invalid_param"
    return info.value


# --- parse --------------------------------------------------------------------------------


def test_a_string_is_an_asset_id_with_every_default():
    assert parse("brand/logo.png") == Watermark(
        asset="brand/logo.png", position="se", opacity=0.5, scale=0.25, margin=16
    )


def test_a_full_object_sets_every_field():
    raw = {"text": "© ACME", "position": "tile", "opacity": 1, "scale": 0.1, "margin": 0}
    assert parse({**raw, "color": "FF8000"}) == Watermark(
        text="© ACME", position="tile", opacity=1.0, scale=0.1, margin=0, color=(255, 128, 0)
    )
    assert parse({"asset": "logo", "opacity": 0, "scale": 1, "margin": 1000}) == Watermark(
        asset="logo", opacity=0.0, scale=1.0, margin=1000
    )


@pytest.mark.parametrize("position", POSITIONS)
def test_every_position_is_accepted(position):
    assert parse({"asset": "logo", "position": position}).position == position


@pytest.mark.parametrize(
    ("raw", "param"),
    [
        ({"asset": "logo", "size": 3}, "wm.size"),
        ({"asset": "logo", "position": "top"}, "wm.position"),
        ({"asset": "logo", "position": None}, "wm.position"),
        ({"asset": "logo", "opacity": 1.5}, "wm.opacity"),
        ({"asset": "logo", "opacity": -0.1}, "wm.opacity"),
        ({"asset": "logo", "opacity": "0.5"}, "wm.opacity"),
        ({"asset": "logo", "opacity": True}, "wm.opacity"),
        ({"asset": "logo", "opacity": float("nan")}, "wm.opacity"),
        ({"asset": "logo", "scale": 0}, "wm.scale"),
        ({"asset": "logo", "scale": 0.009}, "wm.scale"),
        ({"asset": "logo", "scale": 1.01}, "wm.scale"),
        ({"asset": "logo", "scale": float("inf")}, "wm.scale"),
        ({"asset": "logo", "margin": -1}, "wm.margin"),
        ({"asset": "logo", "margin": 1001}, "wm.margin"),
        ({"asset": "logo", "margin": 2.5}, "wm.margin"),
        ({"asset": "logo", "margin": False}, "wm.margin"),
        ({"text": "x", "color": "red"}, "wm.color"),
        ({"text": "x", "color": "#ffffff"}, "wm.color"),
        ({"text": "x", "color": "fffff"}, "wm.color"),
        ({"text": "x", "color": "gggggg"}, "wm.color"),
        ({"text": "x", "color": 0xFFFFFF}, "wm.color"),
        ({"asset": "logo", "color": "ffffff"}, "wm.color"),
        ({"text": ""}, "wm.text"),
        ({"text": "x" * 201}, "wm.text"),
        ({"text": "two\nlines"}, "wm.text"),
        ({"text": "bell\x07"}, "wm.text"),
        ({"text": "   "}, "wm.text"),
        ({"text": 5}, "wm.text"),
        ({"asset": ""}, "wm.asset"),
        ({"asset": "a/../b"}, "wm.asset"),
        ({"asset": "a\\b"}, "wm.asset"),
        ({"asset": 5}, "wm.asset"),
        ("", "wm.asset"),
        ("../etc/passwd", "wm.asset"),
        (5, "wm"),
        (None, "wm"),
        (["logo"], "wm"),
    ],
)
def test_a_bad_field_is_refused_naming_it(raw, param):
    error = refused(raw)
    assert error.param == param
    assert error.message


def test_a_refusal_says_what_is_accepted():
    assert "0..1" in refused({"asset": "logo", "opacity": 2}).message
    assert "se" in refused({"asset": "logo", "position": "top"}).message
    assert "RRGGBB" in refused({"text": "x", "color": "red"}).message


@pytest.mark.parametrize("raw", [{"asset": "logo", "text": "x"}, {}, {"position": "n"}])
def test_exactly_one_of_asset_or_text_is_required(raw):
    assert refused(raw).param == "wm"


def test_text_of_200_characters_with_markup_characters_is_accepted():
    assert parse({"text": "<b>&" * 50}).text == "<b>&" * 50


# --- position -----------------------------------------------------------------------------

W, H, MARGIN = 400, 300, 10
MARK_W, MARK_H = 100, 50  # scale 0.25 of 400, the 2:1 white mark
EXPECTED_X = {"w": MARGIN, "c": (W - MARK_W) // 2, "e": W - MARK_W - MARGIN}
EXPECTED_Y = {"n": MARGIN, "c": (H - MARK_H) // 2, "s": H - MARK_H - MARGIN}


def expected_box(position: str) -> Box:
    horizontal = next((c for c in position if c in "we"), "c")
    vertical = next((c for c in position if c in "ns"), "c")
    if position == "center":
        horizontal = vertical = "c"
    return EXPECTED_X[horizontal], EXPECTED_Y[vertical], MARK_W, MARK_H


@pytest.mark.parametrize("position", [p for p in POSITIONS if p != "tile"])
def test_each_position_puts_the_mark_in_its_place_with_the_margin_kept_clear(position):
    black = solid(W, H, [0, 0, 0])
    mark = Watermark(asset="m", position=position, opacity=1, scale=0.25, margin=MARGIN)
    out = apply(black, mark, white_mark())
    box = expected_box(position)
    assert (out.width, out.height, out.bands, out.format) == (W, H, 3, "uchar")
    assert region(out, box).min() == 255  # the whole mark is there, opaque
    assert bbox(changed(black, out)) == box  # and nothing outside it: margins stay black


def test_a_margin_wider_than_the_room_left_brings_the_mark_no_further_than_the_centre():
    black = solid(W, H, [0, 0, 0])
    for position in ("se", "nw", "e"):
        mark = Watermark(asset="m", position=position, opacity=1, margin=1000)
        out = apply(black, mark, white_mark())
        assert bbox(changed(black, out)) == expected_box("center")


def test_tile_covers_every_quadrant_with_gaps_between_marks():
    black = solid(W, H, [0, 0, 0])
    mark = Watermark(asset="m", position="tile", opacity=1, scale=0.1, margin=20)
    out = apply(black, mark, white_mark())
    for x in (0, W // 2):
        for y in (0, H // 2):
            quadrant = region(out, (x, y, W // 2, H // 2))
            assert quadrant.max() == 255
            assert quadrant.min() == 0
            assert 0.1 < quadrant.avg() / 255 < 0.6
    # One copy sits on the centre.
    assert region(out, (W // 2 - 15, H // 2 - 5, 30, 10)).min() == 255


def test_a_mark_taller_than_the_image_is_shrunk_to_fit_inside_it():
    black = solid(W, 100, [0, 0, 0])
    tall = white_mark(20, 200)  # at scale 1 it would be 400 x 4000
    out = apply(black, Watermark(asset="m", position="center", opacity=1, scale=1), tall)
    assert bbox(changed(black, out)) == (195, 0, 10, 100)  # 1:10, as the source


# --- opacity, scale, alpha ----------------------------------------------------------------


@pytest.mark.parametrize(("opacity", "level"), [(1.0, 255), (0.5, 128), (0.25, 64)])
def test_a_white_mark_on_black_is_as_bright_as_its_opacity(opacity, level):
    black = solid(W, H, [0, 0, 0])
    mark = Watermark(asset="m", position="nw", opacity=opacity, scale=0.25, margin=0)
    out = apply(black, mark, white_mark())
    inside = region(out, (0, 0, MARK_W, MARK_H))
    assert abs(inside.avg() - level) <= 1.5
    assert inside.deviate() < 1
    assert region(out, (MARK_W, MARK_H, W - MARK_W, H - MARK_H)).max() == 0


def test_a_grey_image_gets_a_grey_mark_at_the_same_opacity():
    black = solid(W, H, [0])
    mark = Watermark(asset="m", position="nw", opacity=0.5, scale=0.25, margin=0)
    out = apply(black, mark, white_mark())
    assert (out.bands, out.interpretation, out.format) == (1, "b-w", "uchar")
    assert abs(region(out, (0, 0, MARK_W, MARK_H)).avg() - 128) <= 1.5
    assert bbox(changed(black, out)) == (0, 0, MARK_W, MARK_H)


def test_opacity_zero_leaves_the_image_unchanged():
    photo = pyvips.Image.new_from_file(str(IMAGES / "photo.jpg"))
    out = apply(photo, Watermark(asset="m", opacity=0), white_mark())
    assert (out.width, out.height, out.bands) == (photo.width, photo.height, photo.bands)
    assert changed(photo, out).max() == 0


@pytest.mark.parametrize("scale", [0.05, 0.25, 0.5, 1.0])
def test_an_image_mark_is_scale_times_the_output_width(scale):
    grey = solid(640, 480, [128, 128, 128])
    out = apply(grey, Watermark(asset="m", opacity=1, scale=scale, margin=0), white_mark())
    box = bbox(changed(grey, out, threshold=8))
    assert box is not None
    assert abs(box[2] - scale * 640) <= 1


@pytest.mark.parametrize("scale", [0.1, 0.3, 0.8])
def test_a_text_mark_is_about_scale_times_the_output_width(scale):
    grey = solid(640, 480, [128, 128, 128])
    mark = Watermark(text="Sample Text", opacity=1, scale=scale, position="center")
    box = bbox(changed(grey, apply(grey, mark, None), threshold=32))
    assert box is not None
    # The typeset line is `scale` wide; its ink is a little narrower (side bearings).
    assert 0.85 * scale * 640 <= box[2] <= scale * 640 + 1


def test_on_a_transparent_image_the_mark_becomes_partly_opaque_and_the_rest_stays_clear():
    clear = solid(W, H, [0, 0, 0, 0])
    mark = Watermark(asset="m", position="nw", opacity=0.6, scale=0.25, margin=0)
    out = apply(clear, mark, white_mark())
    assert (out.bands, out.format) == (4, "uchar")
    alpha = out.extract_band(3)
    assert abs(region(alpha, (0, 0, MARK_W, MARK_H)).avg() - 0.6 * 255) <= 1.5
    assert bbox(alpha) == (0, 0, MARK_W, MARK_H)
    assert region(out.extract_band(0, n=3), (0, 0, MARK_W, MARK_H)).min() == 255


def test_on_an_opaque_rgba_image_alpha_stays_opaque_everywhere():
    opaque = solid(W, H, [10, 20, 30, 255])
    out = apply(opaque, Watermark(asset="m", position="tile", opacity=0.5), white_mark())
    assert out.bands == 4
    assert out.extract_band(3).min() == 255
    assert out.extract_band(0).max() > 100


def test_a_grey_image_with_alpha_keeps_two_bands_and_its_transparency():
    clear = solid(W, H, [0, 0])
    out = apply(clear, Watermark(text="grey", opacity=1, position="center"), None)
    assert (out.bands, out.interpretation, out.format) == (2, "b-w", "uchar")
    assert out.extract_band(1).max() == 255
    assert region(out.extract_band(1), (0, 0, 50, 50)).max() == 0


def test_a_mark_with_its_own_alpha_leaves_the_image_unchanged_where_it_is_transparent():
    source = (IMAGES / "alpha.png").read_bytes()
    own = pyvips.Image.new_from_buffer(source, "")  # 300 x 203: drawn at scale 1, unresized
    grey = solid(own.width, 250, [128, 128, 128])
    out = apply(grey, Watermark(asset="m", position="nw", opacity=1, scale=1, margin=0), source)
    moved = changed(grey, out).crop(0, 0, own.width, own.height)
    alpha = own.extract_band(3)
    assert (moved & (alpha == 0)).max() == 0  # transparent parts of the mark show the image
    assert ((moved & (alpha == 255)).avg() / (alpha == 255).avg()) > 0.9
    assert region(changed(grey, out), (0, own.height, own.width, 250 - own.height)).max() == 0


# --- text ---------------------------------------------------------------------------------


def test_text_is_drawn_in_the_colour_asked_for():
    black = solid(W, H, [0, 0, 0])
    mark = Watermark(text="Hello & <world>", opacity=1, color=(255, 0, 0), position="s")
    out = apply(black, mark, None)
    box = bbox(changed(black, out))
    assert box is not None and box[2] * box[3] > 200
    assert out.extract_band(0).max() == 255
    assert out.extract_band(1).max() == 0 and out.extract_band(2).max() == 0


def test_text_is_drawn_on_a_grey_image_as_grey():
    photo = pyvips.Image.new_from_file(str(IMAGES / "photo.jpg"))
    grey = photo.colourspace("b-w")
    out = apply(grey, Watermark(text="© imgcdn", opacity=1, position="nw"), None)
    assert (out.bands, out.interpretation, out.format) == (1, "b-w", "uchar")
    box = bbox(changed(grey, out))
    assert box is not None and box[0] >= 16 and box[1] >= 16
    assert region(out, box).max() == 255


def test_a_missing_asset_body_is_a_server_error_not_a_silent_skip():
    with pytest.raises(ImgcdnError, match="not loaded") as info:
        apply(solid(10, 10, [0, 0, 0]), Watermark(asset="m"), None)
    assert info.value.status == 500


# --- through the pipeline -----------------------------------------------------------------

LIMITS = SourceLimits(max_bytes=50_000_000, max_pixels=100_000_000, max_frames=1000)


def rendered(name: str, fmt: str, mark: Watermark | None, source: bytes | None) -> pyvips.Image:
    data = (IMAGES / name).read_bytes()
    spec = parse_query("w=200", Limits())
    body = render(data, probe(data, LIMITS), spec, fmt, RenderOptions(), Cancel(), mark, source)
    return decode(body.body)


SE_MARK = Watermark(asset="m", position="se", opacity=1, scale=0.25, margin=8)


def test_a_jpeg_render_carries_the_mark_in_its_corner():
    plain = rendered("photo.jpg", "jpeg", None, None)
    marked = rendered("photo.jpg", "jpeg", SE_MARK, white_mark())
    assert (marked.width, marked.height) == (plain.width, plain.height) == (200, 150)
    corner = (200 - 50 - 8, 150 - 25 - 8, 50, 25)
    assert region(marked, corner).avg() > 245
    assert region(changed(plain, marked, threshold=16), corner).avg() > 200
    assert region(changed(plain, marked, threshold=16), (0, 0, 140, 100)).max() == 0


@pytest.mark.parametrize("fmt", ["gif", "webp"])
def test_every_frame_of_an_animation_carries_the_mark(fmt):
    plain = rendered("anim.gif", fmt, None, None)
    marked = rendered("anim.gif", fmt, SE_MARK, white_mark())
    page = int(marked.get("page-height"))
    pages = marked.height // page
    assert pages == int(plain.get("n-pages")) == 6
    width = marked.width  # 120: w=200 does not enlarge
    mark_w = round(0.25 * width)
    corner = (width - mark_w - 8, page - mark_w // 2 - 8, mark_w, mark_w // 2)
    for index in range(pages):
        # Colour only: libwebp may keep an (opaque) alpha band for the marked animation,
        # whose unchanged corner it encodes as "same as the previous frame".
        frame = marked.crop(0, index * page, width, page).extract_band(0, n=3)
        before = plain.crop(0, index * page, width, page).extract_band(0, n=3)
        assert region(frame, corner).avg() > 240, index
        # The far corner is untouched, up to the lossy encoder's noise.
        far = (0, 0, width // 2, page // 2)
        assert (region(frame, far).cast("int") - region(before, far)).abs().avg() < 3, index
