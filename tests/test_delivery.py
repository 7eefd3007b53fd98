"""The delivery route, GET|HEAD /t/{template}/{id} (SPEC §2 and §4), over HTTP.

Real app, real libvips, the real images in tests/images. Images are compared by size,
format and pixel statistics, never by bytes. PNG output is used where a comparison must be
exact: it is lossless, so a pixel that moved shows up as a difference.
"""

from __future__ import annotations

import email.utils
import inspect
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx2
import pytest
import pyvips
from conftest import AUTH, IMAGES, decode, loader, upload
from starlette.testclient import TestClient

from server import variants
from server.imaging import pipeline

CHROMIUM_ACCEPT = "image/avif,image/webp,image/apng,image/svg+xml,image/*,*/*;q=0.8"


def rendered(r: httpx2.Response) -> pyvips.Image:
    """The image in a 200 response (and a readable failure when it is not one)."""
    assert r.status_code == 200, r.text
    assert r.headers["content-length"] == str(len(r.content))
    return decode(r.content)


def fetch(client: TestClient, query: str, asset: str = "photo.jpg", **kw: Any) -> pyvips.Image:
    return rendered(client.get(f"/t/_/{asset}?{query}", **kw))


def source(name: str) -> pyvips.Image:
    return pyvips.Image.new_from_file(str(IMAGES / name))


def mean_diff(a: pyvips.Image, b: pyvips.Image) -> float:
    """Mean absolute difference per pixel and band, 0..255."""
    assert (a.width, a.height, a.bands) == (b.width, b.height, b.bands)
    return float((a.cast("float") - b.cast("float")).abs().avg())


def size(image: pyvips.Image) -> tuple[int, int]:
    return image.width, image.height


def near(pixel: list[float], colour: tuple[float, ...], tolerance: float = 6) -> bool:
    return all(abs(p - c) <= tolerance for p, c in zip(pixel, colour, strict=True))


def error(r: httpx2.Response, status: int) -> dict[str, Any]:
    """The SPEC §4 error body of `r`, after checking its status and headers."""
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/json")
    assert r.headers["cache-control"] == "no-store"
    body: dict[str, Any] = r.json()["error"]
    assert body["code"]
    assert body["message"]
    return body


def count_calls(monkeypatch: pytest.MonkeyPatch, owner: object, name: str) -> list[int]:
    """Wrap `owner.name` (sync or async) so each call appends to the returned list."""
    calls: list[int] = []
    original = getattr(owner, name)

    if inspect.iscoroutinefunction(original):

        async def counted_async(*args: Any, **kwargs: Any) -> Any:
            calls.append(1)
            return await original(*args, **kwargs)

        monkeypatch.setattr(owner, name, counted_async)
    else:

        def counted(*args: Any, **kwargs: Any) -> Any:
            calls.append(1)
            return original(*args, **kwargs)

        monkeypatch.setattr(owner, name, counted)
    return calls


# --- Sizes: fit, enlarge, w/h alone, dpr ------------------------------------------------


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("w=200&h=200", (200, 200)),  # default fit with both: cover
        ("w=200&h=100&fit=cover", (200, 100)),
        ("w=200&h=200&fit=contain", (200, 200)),
        ("w=200&h=200&fit=inside", (200, 150)),
        ("w=200&h=200&fit=outside", (267, 200)),
        ("w=200&h=100&fit=fill", (200, 100)),
        ("w=400&h=100&fit=fill", (400, 100)),
        ("w=200", (200, 150)),
        ("h=300", (400, 300)),
        ("w=100&dpr=2", (200, 150)),
        ("w=100&h=100&dpr=1.5", (150, 150)),
        ("h=50&dpr=3", (200, 150)),
        ("w=1000", (800, 600)),  # no enlarging by default
        ("w=1000&h=1000&fit=inside", (800, 600)),
        ("w=1000&enlarge=1", (1000, 750)),
        ("w=1000&h=1000&fit=inside&enlarge=1", (1000, 750)),
        ("w=1000&h=1000&fit=cover&enlarge=1", (1000, 1000)),
        ("w=1000&h=1000&fit=outside&enlarge=1", (1333, 1000)),
        ("w=1000&h=900&fit=fill&enlarge=1", (1000, 900)),
        ("w=1000&h=1000&fit=contain", (1000, 1000)),  # padded, even without enlarging
        ("w=1000&h=500&fit=contain&enlarge=1", (1000, 500)),
    ],
)
def test_each_fit_gives_its_exact_output_size(uploaded, query, expected):
    assert size(fetch(uploaded, query)) == expected


def test_the_default_fit_with_both_sides_is_cover(uploaded):
    default = uploaded.get("/t/_/photo.jpg?w=120&h=120")
    cover = uploaded.get("/t/_/photo.jpg?w=120&h=120&fit=cover")
    assert size(rendered(default)) == size(rendered(cover)) == (120, 120)
    assert default.headers["etag"] == cover.headers["etag"]
    # With one side only, the default is inside: the whole picture, no crop.
    assert size(fetch(uploaded, "w=120")) == (120, 90)


def test_contain_keeps_the_whole_image_and_pads_with_bg(uploaded):
    image = fetch(uploaded, "w=200&h=200&fit=contain&bg=ff0000&fmt=png")
    assert size(image) == (200, 200)
    # 800x600 fits as 200x150: 25 rows of padding above and below.
    assert near(image.getpoint(100, 5), (255, 0, 0), 1)
    assert near(image.getpoint(100, 194), (255, 0, 0), 1)
    inside = fetch(uploaded, "w=200&fmt=png")
    assert mean_diff(image.crop(0, 25, 200, 150), inside) < 1


def test_fill_stretches_instead_of_cropping(uploaded):
    stretched = fetch(uploaded, "w=200&h=300&fit=fill&fmt=png")
    assert size(stretched) == (200, 300)
    # Squeezed back to 4:3, the stretched image is the whole picture, not a slice of it.
    whole = fetch(uploaded, "w=200&fmt=png")
    squeezed = stretched.resize(1, vscale=150 / 300)
    assert mean_diff(squeezed, whole) < 6


# --- Gravity ---------------------------------------------------------------------------

COMPASS = {
    "n": (0.5, 0.0),
    "s": (0.5, 1.0),
    "e": (1.0, 0.5),
    "w": (0.0, 0.5),
    "ne": (1.0, 0.0),
    "nw": (0.0, 0.0),
    "se": (1.0, 1.0),
    "sw": (0.0, 1.0),
    "center": (0.5, 0.5),
    "fp:0,0": (0.0, 0.0),
    "fp:1,1": (1.0, 1.0),
}


@pytest.mark.parametrize("gravity", COMPASS)
def test_each_gravity_keeps_its_part_of_a_cover_crop(uploaded, gravity):
    fx, fy = COMPASS[gravity]
    # A wide box leaves 175 rows to crop (800x600 -> 300x225 -> 300x50), a tall box 350
    # columns (-> 400x300 -> 50x300). The crop must be that window of the resized image.
    wide = fetch(uploaded, f"w=300&h=50&g={gravity}&fmt=png")
    whole_wide = fetch(uploaded, "w=300&fmt=png")
    assert mean_diff(wide, whole_wide.crop(0, round(175 * fy), 300, 50)) < 1
    tall = fetch(uploaded, f"w=50&h=300&g={gravity}&fmt=png")
    whole_tall = fetch(uploaded, "w=400&fmt=png")
    assert mean_diff(tall, whole_tall.crop(round(350 * fx), 0, 50, 300)) < 1


def test_opposite_gravities_give_different_crops(uploaded):
    nw = fetch(uploaded, "w=200&h=200&g=nw")
    se = fetch(uploaded, "w=200&h=200&g=se")
    assert abs(nw.avg() - se.avg()) > 5
    top = fetch(uploaded, "w=300&h=50&g=fp:0.5,0")
    bottom = fetch(uploaded, "w=300&h=50&g=fp:0.5,1")
    assert abs(top.avg() - bottom.avg()) > 20


def test_a_focal_point_centres_the_crop_on_it(uploaded):
    # fp:0.5,0.25 on 300x225: the 50-row window centred on row 56 starts at row 31.
    image = fetch(uploaded, "w=300&h=50&g=fp:0.5,0.25&fmt=png")
    whole = fetch(uploaded, "w=300&fmt=png")
    assert mean_diff(image, whole.crop(0, 31, 300, 50)) < 1


@pytest.mark.parametrize("gravity", ["smart", "entropy"])
@pytest.mark.parametrize(("query", "box"), [("w=200&h=200", (200, 200)), ("w=90&h=160", (90, 160))])
def test_content_aware_gravity_gives_the_exact_box(uploaded, gravity, query, box):
    image = fetch(uploaded, f"{query}&g={gravity}")
    assert size(image) == box
    assert image.deviate() > 10  # a picture, not padding


# --- Crop, rotation, flips -------------------------------------------------------------


def test_crop_is_in_source_pixels_of_the_upright_image(uploaded):
    upright = source("orient6.jpg").autorot()
    assert size(upright) == (399, 600)
    image = fetch(uploaded, "crop=100,200,150,250&fmt=png", "orient6.jpg")
    assert size(image) == (150, 250)
    assert mean_diff(image, upright.crop(100, 200, 150, 250)) < 1.5
    # The same box in the stored, sideways frame is other pixels.
    assert mean_diff(image, upright.crop(200, 100, 150, 250)) > 10


def test_crop_then_resize_scales_the_cropped_box(uploaded):
    image = fetch(uploaded, "crop=100,200,150,250&w=75&fmt=png", "orient6.jpg")
    assert size(image) == (75, 125)
    upright = source("orient6.jpg").autorot()

    def distance(x: int, y: int) -> float:
        return mean_diff(image, upright.crop(x, y, 150, 250).resize(0.5))

    # Shrink-on-load decodes at half size, so the box may land one source pixel off.
    assert min(distance(100 + dx, 200 + dy) for dx in (-1, 0, 1) for dy in (-1, 0, 1)) < 3
    assert distance(200, 100) > 10


def test_a_crop_running_past_the_edge_is_clamped_to_the_image(uploaded):
    image = fetch(uploaded, "crop=300,500,1000,1000", "orient6.jpg")
    assert size(image) == (99, 100)


@pytest.mark.parametrize(
    ("query", "op"),
    [("w=150&rot=90", "d90"), ("w=200&rot=180", "d180"), ("w=150&rot=270", "d270")],
)
def test_quarter_turns_swap_sides_and_keep_every_pixel(uploaded, query, op):
    unrotated = fetch(uploaded, "w=200&fmt=png")
    image = fetch(uploaded, f"{query}&fmt=png")
    assert mean_diff(image, unrotated.rot(op)) < 0.5


def test_negative_quarter_turns_are_the_same_as_positive_ones(uploaded):
    minus = uploaded.get("/t/_/photo.jpg?w=150&rot=-90")
    plus = uploaded.get("/t/_/photo.jpg?w=150&rot=270")
    assert size(rendered(minus)) == (150, 200)
    assert minus.headers["etag"] == plus.headers["etag"]


@pytest.mark.parametrize(
    ("query", "op"),
    [
        ("rot=90", "d90"),
        ("rot=180", "d180"),
        ("rot=270", "d270"),
        ("flip=v", "flipver"),
        ("w=1000&rot=90", "d90"),
    ],
)
def test_a_quarter_turn_or_flip_at_full_size_is_lossless(uploaded, query, op):
    original = source("photo.jpg")
    expected = original.flipver() if op == "flipver" else original.rot(op)
    image = fetch(uploaded, f"{query}&fmt=png")
    assert mean_diff(image, expected) < 0.5


def test_a_free_rotation_grows_the_box_and_fills_the_corners_with_bg(uploaded):
    image = fetch(uploaded, "w=200&rot=45&bg=ff0000")
    # A 200x150 picture turned 45 degrees needs (200 + 150) / sqrt(2) ~ 247 px each way.
    assert abs(image.width - 247) <= 2
    assert abs(image.height - 247) <= 2
    for x, y in ((0, 0), (image.width - 1, 0), (0, image.height - 1)):
        assert near(image.getpoint(x, y), (255, 0, 0))
    assert not near(image.getpoint(image.width // 2, image.height // 2), (255, 0, 0), 40)


def test_a_free_rotation_at_full_size_renders(uploaded):
    image = fetch(uploaded, "rot=30")
    # 800x600 turned 30 degrees: 800 cos 30 + 600 sin 30 by 800 sin 30 + 600 cos 30.
    assert abs(image.width - 993) <= 2
    assert abs(image.height - 920) <= 2


def test_a_free_rotation_in_png_with_a_transparent_bg_has_transparent_corners(uploaded):
    image = fetch(uploaded, "w=200&rot=30&bg=00000000&fmt=png")
    assert image.bands == 4
    assert image.getpoint(0, 0)[3] == 0
    assert image.getpoint(image.width // 2, image.height // 2)[3] == 255


@pytest.mark.parametrize("flip", ["h", "v", "hv"])
def test_flips_mirror_the_image(uploaded, flip):
    unflipped = fetch(uploaded, "w=200&fmt=png")
    image = fetch(uploaded, f"w=200&flip={flip}&fmt=png")
    mirrored = unflipped
    if "h" in flip:
        mirrored = mirrored.fliphor()
    if "v" in flip:
        mirrored = mirrored.flipver()
    # The first strip of the flipped image is the mirrored last strip of the original.
    strip_w, strip_h = (10, 150) if flip == "h" else (200, 10)
    assert mean_diff(image.crop(0, 0, strip_w, strip_h), mirrored.crop(0, 0, strip_w, strip_h)) < 1
    assert mean_diff(image, mirrored) < 1
    assert mean_diff(image, unflipped) > 20


# --- Filters, trim, background ---------------------------------------------------------


def test_blur_lowers_the_deviation_and_sharpen_raises_it(uploaded):
    plain = fetch(uploaded, "w=200").deviate()
    assert fetch(uploaded, "w=200&blur=5").deviate() < plain - 5
    assert fetch(uploaded, "w=200&sharpen=2").deviate() > plain + 2
    assert fetch(uploaded, "w=200&blur=1").deviate() > fetch(uploaded, "w=200&blur=8").deviate()


@pytest.mark.parametrize("kind", ["png", "jpeg"])
def test_trim_removes_a_uniform_border(client, kind):
    inner = source("photo.jpg").resize(0.25)  # 200x150
    framed = inner.embed(20, 30, 240, 210, extend="background", background=[255, 0, 0])
    data = framed.pngsave_buffer() if kind == "png" else framed.jpegsave_buffer(Q=95)
    client.put(f"/v1/assets/framed.{kind}", content=data, headers=AUTH).raise_for_status()
    assert size(fetch(client, "", f"framed.{kind}")) == (240, 210)
    trimmed = fetch(client, "trim=10&fmt=png", f"framed.{kind}")
    assert size(trimmed) == (200, 150)
    assert mean_diff(trimmed, inner) < 3
    assert size(fetch(client, "trim=10&w=100", f"framed.{kind}")) == (100, 75)


def test_trim_leaves_an_image_without_a_border_alone(uploaded):
    assert size(fetch(uploaded, "trim=10")) == (800, 600)


def test_bg_flattens_alpha_onto_its_colour_in_jpeg(uploaded):
    assert source("alpha.png").getpoint(0, 0)[3] == 0  # a transparent corner
    red = fetch(uploaded, "fmt=jpeg&bg=ff0000", "alpha.png")
    assert red.bands == 3
    assert near(red.getpoint(0, 0), (255, 0, 0))
    white = fetch(uploaded, "fmt=jpeg", "alpha.png")
    assert near(white.getpoint(0, 0), (255, 255, 255))


def test_an_opaque_bg_flattens_a_png_too(uploaded):
    r = uploaded.get("/t/_/alpha.png?bg=00ff00")
    image = rendered(r)
    assert loader(r.content) == "png"
    assert image.bands == 3
    assert near(image.getpoint(0, 0), (0, 255, 0), 1)


@pytest.mark.parametrize(
    "query", ["w=100&h=100&fit=contain&fmt=jpeg", "w=100&rot=45&fmt=jpeg", "w=200&rot=30&fmt=jpeg"]
)
def test_padding_a_transparent_source_in_jpeg_uses_the_flatten_colour(uploaded, query):
    image = fetch(uploaded, query, "alpha.png")
    # The fill must look like the transparent pixels around the fig: white, as for an
    # opaque source padded the same way.
    assert near(image.getpoint(0, 0), (255, 255, 255))
    opaque = fetch(uploaded, query)
    assert near(opaque.getpoint(0, 0), (255, 255, 255))


# --- Metadata, progressive, quality, maxbytes, v ---------------------------------------


def icc_description(profile: bytes) -> str:
    """The text of an ICC profile's `desc` tag (v2 'desc' or v4 'mluc'), for naming it."""
    count = int.from_bytes(profile[128:132], "big")
    for i in range(count):
        entry = profile[132 + 12 * i : 144 + 12 * i]
        if entry[:4] == b"desc":
            offset, length = int.from_bytes(entry[4:8], "big"), int.from_bytes(entry[8:12], "big")
            tag = profile[offset : offset + length]
            if tag[:4] == b"mluc":
                start = int.from_bytes(tag[20:24], "big")
                size_ = int.from_bytes(tag[16:20], "big")
                return tag[start : start + size_].decode("utf-16-be")
            return tag[12:].split(b"\0")[0].decode("latin-1")
    return ""


def test_meta_keep_keeps_exif_and_strip_removes_it(uploaded):
    assert "exif-data" in source("orient6.jpg").get_fields()
    kept = fetch(uploaded, "meta=keep", "orient6.jpg")
    assert "exif-data" in kept.get_fields()
    # The pixels are upright now, so the kept EXIF must not ask for another turn.
    assert kept.get("orientation") == 1
    stripped = fetch(uploaded, "meta=strip", "orient6.jpg")
    default = fetch(uploaded, "", "orient6.jpg")
    for image in (stripped, default):
        fields = image.get_fields()
        assert "exif-data" not in fields
        assert "xmp-data" not in fields
        assert "icc-profile-data" not in fields


def test_progressive_makes_a_progressive_jpeg_and_an_interlaced_png(uploaded):
    assert fetch(uploaded, "w=200&progressive=1").get("jpeg-multiscan") == 1
    assert fetch(uploaded, "w=200").get("jpeg-multiscan") == 0
    png = fetch(uploaded, "w=200&progressive=1&fmt=png")
    assert png.get("interlaced") == 1
    plain = fetch(uploaded, "w=200&fmt=png")
    assert "interlaced" not in plain.get_fields() or plain.get("interlaced") == 0


@pytest.mark.parametrize("fmt", ["jpeg", "webp", "avif", "png"])
def test_a_lower_quality_gives_a_smaller_file(uploaded, fmt):
    low = uploaded.get(f"/t/_/photo.jpg?w=300&fmt={fmt}&q=10")
    high = uploaded.get(f"/t/_/photo.jpg?w=300&fmt={fmt}&q=90")
    assert size(rendered(low)) == size(rendered(high)) == (300, 225)
    assert len(low.content) < len(high.content)


def test_a_higher_quality_is_closer_to_the_lossless_render(uploaded):
    lossless = fetch(uploaded, "w=300&fmt=png")
    assert mean_diff(fetch(uploaded, "w=300&q=95"), lossless) < mean_diff(
        fetch(uploaded, "w=300&q=5"), lossless
    )


@pytest.mark.parametrize(("fmt", "budget"), [("jpeg", 8000), ("webp", 6000), ("avif", 5000)])
def test_maxbytes_lowers_quality_until_the_variant_fits(uploaded, fmt, budget):
    unbounded = uploaded.get(f"/t/_/photo.jpg?w=300&fmt={fmt}")
    assert len(unbounded.content) > budget  # so the budget really has to be searched for
    r = uploaded.get(f"/t/_/photo.jpg?w=300&fmt={fmt}&maxbytes={budget}")
    image = rendered(r)
    assert len(r.content) <= budget
    assert size(image) == (300, 225)
    assert loader(r.content) == ("heif" if fmt == "avif" else fmt)


def test_maxbytes_that_not_even_the_lowest_quality_reaches_is_a_422(uploaded):
    # Even at q=1 an 800x600 JPEG of this photo is several KB: 1024 bytes cannot be met.
    floor = len(source("photo.jpg").jpegsave_buffer(Q=1, optimize_coding=True))
    assert floor > 1024
    body = error(uploaded.get("/t/_/photo.jpg?maxbytes=1024"), 422)
    assert body["code"] == "maxbytes_unreachable"
    assert body["param"] == "maxbytes"


def test_v_changes_the_etag_but_not_the_pixels(uploaded):
    one = uploaded.get("/t/_/photo.jpg?w=120&v=1")
    two = uploaded.get("/t/_/photo.jpg?w=120&v=2")
    none = uploaded.get("/t/_/photo.jpg?w=120")
    assert len({one.headers["etag"], two.headers["etag"], none.headers["etag"]}) == 3
    assert mean_diff(rendered(one), rendered(two)) == 0
    assert mean_diff(rendered(one), rendered(none)) == 0
    assert two.headers["x-cache"] == "miss"  # a new v is a new cache entry


def test_a_new_upload_under_the_same_id_is_a_new_variant(uploaded):
    before = uploaded.get("/t/_/photo.jpg?w=100")
    upload(uploaded, "photo.jpg", "p3.jpg")
    after = uploaded.get("/t/_/photo.jpg?w=100")
    assert after.headers["etag"] != before.headers["etag"]
    assert after.headers["x-cache"] == "miss"
    assert size(rendered(after)) == (100, 75)
    assert mean_diff(rendered(after), rendered(before)) > 10


# --- Formats ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fmt", "mime", "name"),
    [
        ("jpeg", "image/jpeg", "jpeg"),
        ("jpg", "image/jpeg", "jpeg"),
        ("png", "image/png", "png"),
        ("webp", "image/webp", "webp"),
        ("avif", "image/avif", "heif"),
        ("gif", "image/gif", "gif"),
    ],
)
def test_fmt_gives_that_format(uploaded, fmt, mime, name):
    r = uploaded.get(f"/t/_/photo.jpg?w=160&fmt={fmt}")
    assert size(rendered(r)) == (160, 120)
    assert r.headers["content-type"] == mime
    assert loader(r.content) == name
    assert "vary" not in r.headers
    if fmt == "avif":
        assert pyvips.Image.new_from_buffer(r.content, "").get("heif-compression") == "av1"


@pytest.mark.parametrize(
    ("asset", "name", "mime"),
    [
        ("photo.jpg", "jpeg", "image/jpeg"),
        ("alpha.png", "png", "image/png"),
        ("anim.gif", "gif", "image/gif"),
    ],
)
def test_the_default_format_keeps_the_source_kind(uploaded, asset, name, mime):
    r = uploaded.get(f"/t/_/{asset}?w=60", headers={"Accept": CHROMIUM_ACCEPT})
    rendered(r)
    assert loader(r.content) == name
    assert r.headers["content-type"] == mime
    assert "vary" not in r.headers


@pytest.mark.parametrize(
    ("asset", "accept", "name"),
    [
        ("photo.jpg", CHROMIUM_ACCEPT, "heif"),
        ("photo.jpg", "image/webp,*/*", "webp"),
        ("photo.jpg", "*/*", "jpeg"),
        ("photo.jpg", "image/avif;q=0,image/webp", "webp"),
        ("alpha.png", CHROMIUM_ACCEPT, "heif"),
        ("alpha.png", "image/webp,*/*", "webp"),
        ("alpha.png", "*/*", "png"),
    ],
)
def test_fmt_auto_negotiates_from_accept_and_varies_on_it(uploaded, asset, accept, name):
    r = uploaded.get(f"/t/_/{asset}?w=60&fmt=auto", headers={"Accept": accept})
    rendered(r)
    assert loader(r.content) == name
    assert r.headers["vary"] == "Accept"


def test_fmt_auto_gives_each_format_its_own_etag(uploaded):
    avif = uploaded.get("/t/_/photo.jpg?w=60&fmt=auto", headers={"Accept": CHROMIUM_ACCEPT})
    jpeg = uploaded.get("/t/_/photo.jpg?w=60&fmt=auto", headers={"Accept": "*/*"})
    assert avif.headers["etag"] != jpeg.headers["etag"]
    assert avif.headers["content-type"] == "image/avif"
    assert jpeg.headers["content-type"] == "image/jpeg"


# --- Colour and orientation ------------------------------------------------------------


def test_an_exif_rotated_jpeg_comes_out_upright(uploaded):
    reference = source("orient6.jpg").autorot()
    image = fetch(uploaded, "fmt=png", "orient6.jpg")
    assert size(image) == (399, 600)
    assert mean_diff(image, reference) < 1
    assert mean_diff(image, reference.rot("d180")) > 20
    resized = fetch(uploaded, "w=200", "orient6.jpg")
    assert size(resized) == (200, 301)
    assert mean_diff(resized, reference.resize(200 / 399)) < 5
    assert "orientation" not in resized.get_fields() or resized.get("orientation") == 1


def test_a_large_exif_rotated_jpeg_at_full_size_comes_out_upright(client):
    stored = source("orient6.jpg").resize(2.5).copy()  # 1500x998, stored sideways
    stored.set_type(pyvips.GValue.gint_type, "orientation", 6)
    data = stored.jpegsave_buffer(Q=90, keep=31)
    client.put("/v1/assets/big6.jpg", content=data, headers=AUTH).raise_for_status()
    reference = pyvips.Image.new_from_buffer(data, "").autorot()
    image = fetch(client, "fmt=png", "big6.jpg")
    assert size(image) == (998, 1500)
    assert mean_diff(image, reference) < 1


def test_a_cmyk_jpeg_comes_out_as_srgb_in_libvips_colours(uploaded):
    original = source("cmyk.jpg")
    assert original.interpretation == "cmyk"
    assert original.bands == 4
    reference = original.colourspace("srgb")
    for query, tolerance in (("fmt=png", 0.5), ("", 4)):
        image = fetch(uploaded, query, "cmyk.jpg")
        assert image.bands == 3
        assert image.interpretation == "srgb"
        assert mean_diff(image, reference) < tolerance
        for band in range(3):
            assert abs(image[band].avg() - reference[band].avg()) < tolerance


def test_a_display_p3_jpeg_is_converted_to_srgb_and_loses_its_p3_profile(uploaded):
    original = source("p3.jpg")
    assert "P3" in icc_description(original.get("icc-profile-data"))
    reference = original.icc_transform("srgb", embedded=True, intent="perceptual")
    image = fetch(uploaded, "fmt=png", "p3.jpg")
    assert "icc-profile-data" not in image.get_fields()  # so a browser assumes sRGB
    assert mean_diff(image, reference) < 0.5
    assert mean_diff(image, original) > 1  # the P3 numbers were really converted
    jpeg = fetch(uploaded, "", "p3.jpg")
    assert "icc-profile-data" not in jpeg.get_fields()
    assert mean_diff(jpeg, reference) < 6


def test_meta_keep_on_a_p3_jpeg_carries_an_srgb_profile_for_srgb_pixels(uploaded):
    original = source("p3.jpg")
    reference = original.icc_transform("srgb", embedded=True, intent="perceptual")
    image = fetch(uploaded, "meta=keep&fmt=png", "p3.jpg")
    profile = image.get("icc-profile-data")
    assert "P3" not in icc_description(profile)
    # What a colour-managed viewer shows: the pixels through the profile they carry.
    shown = image.icc_transform("srgb", embedded=True, intent="perceptual")
    assert mean_diff(shown, reference) < 0.5


# --- Alpha -----------------------------------------------------------------------------


@pytest.mark.parametrize(("fmt", "name"), [("png", "png"), ("webp", "webp"), ("avif", "heif")])
def test_alpha_is_kept_in_formats_that_carry_it(uploaded, fmt, name):
    original = source("alpha.png")
    r = uploaded.get(f"/t/_/alpha.png?fmt={fmt}")
    image = rendered(r)
    assert loader(r.content) == name
    assert image.bands == 4
    assert image.getpoint(0, 0)[3] == 0
    assert image.getpoint(image.width - 1, image.height - 1)[3] == 0
    assert original.getpoint(120, 120)[3] == 255
    assert image.getpoint(120, 120)[3] >= 250
    assert abs(image[3].avg() - original[3].avg()) < 8


def test_alpha_is_flattened_in_jpeg(uploaded):
    image = fetch(uploaded, "fmt=jpeg", "alpha.png")
    assert image.bands == 3
    assert near(image.getpoint(0, 0), (255, 255, 255))
    assert not near(image.getpoint(120, 120), (255, 255, 255), 30)


def test_contain_pads_a_transparent_png_with_transparency(uploaded):
    image = fetch(uploaded, "w=100&h=100&fit=contain", "alpha.png")
    assert size(image) == (100, 100)
    assert image.bands == 4
    assert image.getpoint(50, 2)[3] == 0


# --- Animation -------------------------------------------------------------------------


def frames_of(image: pyvips.Image) -> int:
    return int(image.get("n-pages")) if "n-pages" in image.get_fields() else 1


@pytest.mark.parametrize("fmt", ["gif", "webp"])
def test_an_animation_keeps_its_frames_resized(uploaded, fmt):
    r = uploaded.get(f"/t/_/anim.gif?w=60&fmt={fmt}")
    image = rendered(r)
    assert loader(r.content) == fmt
    assert frames_of(image) == 6
    assert image.get("page-height") == 34
    assert size(image) == (60, 6 * 34)
    assert image.get("delay") == [100] * 6
    first, last = image.crop(0, 0, 60, 34), image.crop(0, 5 * 34, 60, 34)
    assert mean_diff(first, last) > 5  # a pan: the frames are not copies of the first


def test_an_animation_keeps_its_frames_by_default(uploaded):
    image = fetch(uploaded, "", "anim.gif")
    assert frames_of(image) == 6
    assert image.get("page-height") == 68


@pytest.mark.parametrize(
    ("query", "name"), [("anim=0", "gif"), ("fmt=jpeg", "jpeg"), ("anim=0&fmt=webp", "webp")]
)
def test_anim_0_or_a_still_format_gives_one_frame(uploaded, query, name):
    r = uploaded.get(f"/t/_/anim.gif?{query}")
    image = rendered(r)
    assert loader(r.content) == name
    assert frames_of(image) == 1
    assert size(image) == (120, 68)


def test_fmt_auto_for_chromium_gives_an_animated_webp_not_avif(uploaded):
    r = uploaded.get("/t/_/anim.gif?w=60&fmt=auto", headers={"Accept": CHROMIUM_ACCEPT})
    image = rendered(r)
    assert loader(r.content) == "webp"
    assert frames_of(image) == 6
    assert r.headers["vary"] == "Accept"


# --- Headers (SPEC §4) -----------------------------------------------------------------


def test_a_200_carries_the_caching_and_tracing_headers(uploaded):
    r = uploaded.get("/t/_/photo.jpg?w=64")
    rendered(r)
    etag = r.headers["etag"]
    assert not etag.startswith("W/")  # strong
    assert len(etag) > 2
    assert etag[0] == etag[-1] == '"'
    assert r.headers["cache-control"] == "public, max-age=86400, stale-while-revalidate=604800"
    assert r.headers["content-type"] == "image/jpeg"
    assert float(r.headers["x-processing-time"]) >= 0
    assert "total;dur=" in r.headers["server-timing"]
    assert r.headers["x-correlation-id"]
    assert "vary" not in r.headers


def test_last_modified_is_the_source_upload_time(client):
    meta = upload(client, "photo.jpg", "photo.jpg").json()
    r = client.get("/t/_/photo.jpg?w=64")
    modified = email.utils.parsedate_to_datetime(r.headers["last-modified"])
    assert modified.isoformat().replace("+00:00", "Z") == meta["created_at"]


def test_a_versioned_url_is_immutable_for_a_year(uploaded):
    r = uploaded.get("/t/_/photo.jpg?w=64&v=abc.1")
    rendered(r)
    assert r.headers["cache-control"] == "public, max-age=31536000, immutable"


@pytest.mark.parametrize("header", ["X-Correlation-ID", "X-Request-ID"])
def test_the_correlation_id_is_echoed(uploaded, header):
    r = uploaded.get("/t/_/photo.jpg?w=64", headers={header: "req-42.a"})
    assert r.headers["x-correlation-id"] == "req-42.a"


def test_a_correlation_id_is_generated_when_none_is_sent(uploaded):
    one = uploaded.get("/t/_/photo.jpg?w=64").headers["x-correlation-id"]
    two = uploaded.get("/t/_/photo.jpg?w=64").headers["x-correlation-id"]
    assert one
    assert one != two


def test_x_correlation_id_wins_over_x_request_id_whatever_their_order(uploaded):
    headers = [("X-Request-ID", "from-proxy"), ("X-Correlation-ID", "from-app")]
    r = uploaded.get("/t/_/photo.jpg?w=64", headers=headers)
    assert r.headers["x-correlation-id"] == "from-app"


def test_a_variant_is_a_miss_then_a_memory_hit(uploaded):
    first = uploaded.get("/t/_/photo.jpg?w=77")
    second = uploaded.get("/t/_/photo.jpg?w=77")
    assert first.headers["x-cache"] == "miss"
    assert second.headers["x-cache"] == "hit-memory"
    assert first.headers["etag"] == second.headers["etag"]
    assert mean_diff(rendered(first), rendered(second)) == 0


def test_head_gives_the_headers_and_length_without_a_body(uploaded):
    get = uploaded.get("/t/_/photo.jpg?w=90")
    head = uploaded.head("/t/_/photo.jpg?w=90")
    assert head.status_code == 200
    assert head.content == b""
    assert head.headers["content-length"] == str(len(get.content))
    for name in ("etag", "content-type", "cache-control", "last-modified"):
        assert head.headers[name] == get.headers[name]


# --- Revalidation ----------------------------------------------------------------------


def test_if_none_match_gives_a_304_without_reading_the_original_or_rendering(
    make_client, monkeypatch
):
    client = make_client(
        memory_cache_bytes=0, variant_store=False
    )  # no memory hit: only the 304 path avoids work
    upload(client, "photo.jpg", "photo.jpg")
    first = client.get("/t/_/photo.jpg?w=90")
    rendered(first)
    storage = client.app.state.runtime.storage
    gets = count_calls(monkeypatch, storage, "get")
    paths = count_calls(monkeypatch, storage, "local_path")  # libvips reads the file itself
    renders = count_calls(monkeypatch, pipeline, "render")

    r = client.get("/t/_/photo.jpg?w=90", headers={"If-None-Match": first.headers["etag"]})
    assert r.status_code == 304
    assert r.content == b""
    assert r.headers["etag"] == first.headers["etag"]
    assert r.headers["cache-control"] == first.headers["cache-control"]
    assert (len(gets) + len(paths), len(renders)) == (0, 0)

    # The counters do count: without If-None-Match the same URL reads and renders.
    rendered(client.get("/t/_/photo.jpg?w=90"))
    assert (len(gets) + len(paths), len(renders)) == (1, 1)


def test_if_none_match_answers_304_even_with_the_original_gone(make_client):
    client = make_client(memory_cache_bytes=0, variant_store=False)
    upload(client, "photo.jpg", "photo.jpg")
    first = client.get("/t/_/photo.jpg?w=90")
    rendered(first)
    blobs = list((client.app.state.runtime.settings.data_dir / "assets").rglob("*.bin"))
    assert blobs
    for blob in blobs:
        blob.unlink()
    r = client.get("/t/_/photo.jpg?w=90", headers={"If-None-Match": first.headers["etag"]})
    assert r.status_code == 304
    assert r.content == b""
    assert client.get("/t/_/photo.jpg?w=90").status_code != 200  # it really is gone


def test_a_local_original_is_rendered_from_its_file_not_read_into_python(make_client, monkeypatch):
    client = make_client(memory_cache_bytes=0, variant_store=False)
    upload(client, "photo.jpg", "photo.jpg")
    gets = count_calls(monkeypatch, client.app.state.runtime.storage, "get")
    assert size(rendered(client.get("/t/_/photo.jpg?w=90"))) == (90, 68)
    assert gets == []


def test_an_original_file_gone_mid_request_is_a_404_not_a_500(make_client, monkeypatch):
    client = make_client(memory_cache_bytes=0, variant_store=False)
    upload(client, "photo.jpg", "photo.jpg")
    storage = client.app.state.runtime.storage
    # Deleted (or replaced: the old etag's file goes) after the metadata was read.
    monkeypatch.setattr(storage, "local_path", lambda meta: Path("/nonexistent/x.bin"))
    r = client.get("/t/_/photo.jpg?w=90")
    assert r.status_code == 404
    assert r.json()["error"]["code"] == "asset_not_found"


def test_an_unreadable_original_file_is_a_503_with_retry_after(make_client, monkeypatch, tmp_path):
    client = make_client(memory_cache_bytes=0, variant_store=False)
    upload(client, "photo.jpg", "photo.jpg")
    broken = tmp_path / "torn.bin"
    broken.write_bytes((IMAGES / "photo.jpg").read_bytes()[:64])  # a disk that lost the rest
    monkeypatch.setattr(client.app.state.runtime.storage, "local_path", lambda meta: broken)
    r = client.get("/t/_/photo.jpg?w=90")
    assert r.status_code == 503
    assert r.json()["error"]["code"] == "storage_unavailable"
    assert int(r.headers["retry-after"]) > 0


@pytest.mark.parametrize("form", ["{etag}", "W/{etag}", '"other", {etag}', "*"])
def test_if_none_match_accepts_the_forms_rfc_9110_allows(uploaded, form):
    etag = uploaded.get("/t/_/photo.jpg?w=90").headers["etag"]
    r = uploaded.get("/t/_/photo.jpg?w=90", headers={"If-None-Match": form.format(etag=etag)})
    assert r.status_code == 304


def test_a_stale_etag_gets_the_full_image(uploaded):
    r = uploaded.get("/t/_/photo.jpg?w=90", headers={"If-None-Match": '"not-this-one"'})
    assert size(rendered(r)) == (90, 68)


def test_a_negotiated_304_still_varies_on_accept(uploaded):
    url = "/t/_/photo.jpg?w=90&fmt=auto"
    etag = uploaded.get(url, headers={"Accept": "image/webp"}).headers["etag"]
    r = uploaded.get(url, headers={"Accept": "image/webp", "If-None-Match": etag})
    assert r.status_code == 304
    assert r.headers["vary"] == "Accept"
    # Another browser's format is another entity: no 304 for it.
    other = uploaded.get(url, headers={"Accept": "*/*", "If-None-Match": etag})
    assert other.status_code == 200
    assert other.headers["content-type"] == "image/jpeg"


# --- Equivalent URLs share one entry ---------------------------------------------------


@pytest.mark.parametrize(
    ("first", "second"),
    [
        ("w=50&q=80", "q=80&w=50"),
        ("w=100&dpr=2", "w=200"),
        ("w=50", "w=50&q=80"),  # jpeg's default quality written out
        ("w=50&fmt=jpg", "w=50&fmt=jpeg"),
        ("w=60&h=60", "h=60&w=60&fit=cover&g=center"),
        ("w=50&rot=0", "w=50&rot=360"),
    ],
)
def test_equal_transforms_share_one_cache_entry(uploaded, first, second):
    a = uploaded.get(f"/t/_/photo.jpg?{first}")
    b = uploaded.get(f"/t/_/photo.jpg?{second}")
    rendered(a)
    assert a.headers["etag"] == b.headers["etag"]
    assert a.headers["x-cache"] == "miss"
    assert b.headers["x-cache"] == "hit-memory"


def test_identical_concurrent_misses_render_once(live_server, monkeypatch):
    requests = 10
    arrived: list[int] = []
    all_arrived = threading.Event()
    renders: list[int] = []
    real_resolve, real_render = variants.resolve, pipeline.render

    async def resolve(*args: Any, **kwargs: Any) -> Any:
        resolved = await real_resolve(*args, **kwargs)
        arrived.append(1)
        if len(arrived) == requests:
            all_arrived.set()
        return resolved

    def render(*args: Any, **kwargs: Any) -> Any:
        renders.append(1)
        # Hold the render until every request has asked for it: all 10 are then misses
        # in flight at once, and only coalescing can keep this to one render.
        all_arrived.wait(timeout=20)
        return real_render(*args, **kwargs)

    with httpx2.Client(base_url=live_server, timeout=30) as http:
        upload(http, "photo.jpg", "photo.jpg")
        monkeypatch.setattr(variants, "resolve", resolve)
        monkeypatch.setattr(pipeline, "render", render)

        def get(_: int) -> httpx2.Response:
            return http.get("/t/_/photo.jpg?w=111")

        with ThreadPoolExecutor(requests) as pool:
            responses = list(pool.map(get, range(requests)))

    assert all_arrived.is_set()
    assert len(renders) == 1
    assert {r.status_code for r in responses} == {200}
    assert len({r.headers["etag"] for r in responses}) == 1
    assert {size(decode(r.content)) for r in responses} == {(111, 83)}


# --- Errors ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("query", "param"),
    [
        ("foo=1", "foo"),
        ("W=10", "W"),
        ("w=1&w=2", "w"),
        ("fmt=png&fmt=png", "fmt"),
        ("w=0", "w"),
        ("w=abc", "w"),
        ("w=", "w"),
        ("w=9000", "w"),
        ("h=-1", "h"),
        ("h=1.5", "h"),
        ("dpr=5", "dpr"),
        ("dpr=1.555", "dpr"),
        ("fit=stretch", "fit"),
        ("enlarge=true", "enlarge"),
        ("g=middle", "g"),
        ("g=fp:2,0", "g"),
        ("g=fp:0.5", "g"),
        ("crop=1,2,3", "crop"),
        ("crop=0,0,0,10", "crop"),
        ("crop=-1,0,10,10", "crop"),
        ("rot=400", "rot"),
        ("rot=ninety", "rot"),
        ("flip=x", "flip"),
        ("fmt=exe", "fmt"),
        ("q=0", "q"),
        ("q=101", "q"),
        ("maxbytes=10", "maxbytes"),
        ("bg=red", "bg"),
        ("bg=12345", "bg"),
        ("blur=0.1", "blur"),
        ("blur=101", "blur"),
        ("sharpen=11", "sharpen"),
        ("trim=0", "trim"),
        ("meta=all", "meta"),
        ("progressive=yes", "progressive"),
        ("anim=2", "anim"),
        ("v=a/b", "v"),
        ("v=" + "x" * 65, "v"),
    ],
)
def test_a_bad_parameter_is_a_400_naming_it(uploaded, query, param):
    body = error(uploaded.get(f"/t/_/photo.jpg?{query}"), 400)
    assert body["code"] == "invalid_param"
    assert body["param"] == param


def test_a_size_past_the_output_limit_through_dpr_is_a_400(uploaded):
    body = error(uploaded.get("/t/_/photo.jpg?w=5000&dpr=2"), 400)
    assert body["param"] in ("w", "dpr")


def test_an_unknown_asset_is_a_404(uploaded):
    body = error(uploaded.get("/t/_/nothing/here.jpg?w=10"), 404)
    assert "nothing/here.jpg" in body["message"]


def test_an_unknown_template_is_a_404(uploaded):
    body = error(uploaded.get("/t/card/photo.jpg?w=10"), 404)
    assert body["param"] == "template"


def test_a_malformed_template_name_is_a_400(uploaded):
    body = error(uploaded.get("/t/Card!/photo.jpg"), 400)
    assert body["param"] == "template"


@pytest.mark.parametrize(
    "path",
    [
        "/t/_/a/%2e%2e/b.jpg",
        "/t/_/a/%2E%2E/b.jpg",
        "/t/_/%2e%2e/photo.jpg",
        "/t/_/a/%2e/b.jpg",
        "/t/_/a/%252e%252e/b.jpg",
        "/t/_/a%2f%2e%2e%2fb.jpg",
        "/t/_/a%5cb.jpg",
        "/t/_/a%5c..%5cb.jpg",
        "/t/_/a//b.jpg",
        "/t/_/a/b.jpg/",
        "/t/_/a%00b.jpg",
        "/t/_/a%09b.jpg",
        "/t/_/a%7fb.jpg",
        "/t/_/" + "x" * 1025,
    ],
)
def test_a_bad_asset_id_is_a_400(uploaded, path):
    assert error(uploaded.get(path), 400)["code"] == "invalid_id"


@pytest.mark.parametrize("path", ["/t/_/photo.jpg%0a", "/t/_/a%0ab.jpg", "/t/_/photo.jpg%0A?w=9"])
def test_a_newline_in_the_asset_id_is_a_400(uploaded, path):
    assert error(uploaded.get(path), 400)["code"] == "invalid_id"


def test_a_crop_starting_outside_the_image_is_a_400(uploaded):
    # orient6.jpg is 399 wide upright (600 as stored): x=450 is outside what clients see.
    body = error(uploaded.get("/t/_/orient6.jpg?crop=450,0,10,10"), 400)
    assert body["param"] == "crop"
    body = error(uploaded.get("/t/_/photo.jpg?crop=0,600,10,10"), 400)
    assert body["param"] == "crop"


def test_an_animated_webp_stays_an_animated_webp_by_default(uploaded):
    animated = uploaded.get("/t/_/anim.gif?fmt=webp").content
    r = uploaded.put("/v1/assets/anim.webp", content=animated, headers=AUTH)
    assert r.status_code == 201
    out = uploaded.get("/t/_/anim.webp?w=60")
    assert out.headers["content-type"] == "image/webp"
    assert decode(out.content).get("n-pages") == 6


def test_a_still_webp_defaults_to_jpeg_as_the_spec_says(uploaded):
    still = uploaded.get("/t/_/photo.jpg?w=100&fmt=webp").content
    assert uploaded.put("/v1/assets/still.webp", content=still, headers=AUTH).status_code == 201
    assert uploaded.get("/t/_/still.webp").headers["content-type"] == "image/jpeg"


def test_a_free_rotation_that_would_outgrow_the_output_limits_is_scaled_back(make_client):
    client = make_client(max_output_side=300)
    upload(client, "photo.jpg", "photo.jpg")
    image = decode(client.get("/t/_/photo.jpg?w=300&rot=45").content)
    assert max(image.width, image.height) <= 300
    assert max(image.width, image.height) >= 298
