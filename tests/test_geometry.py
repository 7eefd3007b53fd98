"""server/imaging/geometry.py: sizes per fit mode, the output clamp, shrink-on-load, gravity."""

from __future__ import annotations

import math

import pytest

from server.imaging.geometry import Plan, gravity_offset, plan, shrink_factor

MAX_SIDE = 8192
MAX_PIXELS = 40_000_000
LANDSCAPE = (4000, 3000)
PORTRAIT = (3000, 4000)
SMALL_LANDSCAPE = (400, 300)
SMALL_PORTRAIT = (300, 400)
SQUARE_BOX = (600, 600)  # a box whose shape matches neither source


def planned(size, target, fit, enlarge=False, max_side=MAX_SIDE, max_pixels=MAX_PIXELS) -> Plan:
    return plan(size, target, fit, enlarge, max_side, max_pixels)


# Each row: source, fit, scaled, box — for the 600x600 box. Sources larger than the box need
# no upscaling, so enlarge makes no difference to them.
LARGE_SOURCES = [
    (LANDSCAPE, "cover", (800, 600), (600, 600)),
    (LANDSCAPE, "contain", (600, 450), (600, 600)),
    (LANDSCAPE, "inside", (600, 450), (600, 450)),
    (LANDSCAPE, "outside", (800, 600), (800, 600)),
    (LANDSCAPE, "fill", (600, 600), (600, 600)),
    (PORTRAIT, "cover", (600, 800), (600, 600)),
    (PORTRAIT, "contain", (450, 600), (600, 600)),
    (PORTRAIT, "inside", (450, 600), (450, 600)),
    (PORTRAIT, "outside", (600, 800), (600, 800)),
    (PORTRAIT, "fill", (600, 600), (600, 600)),
]


@pytest.mark.parametrize("enlarge", [False, True])
@pytest.mark.parametrize(("size", "fit", "scaled", "box"), LARGE_SOURCES)
def test_a_large_source_lands_on_the_exact_size_for_each_fit(size, fit, scaled, box, enlarge):
    assert planned(size, SQUARE_BOX, fit, enlarge) == Plan(scaled=scaled, box=box)


@pytest.mark.parametrize(
    ("size", "fit", "scaled", "box"),
    [
        (SMALL_LANDSCAPE, "cover", (800, 600), (600, 600)),
        (SMALL_LANDSCAPE, "contain", (600, 450), (600, 600)),
        (SMALL_LANDSCAPE, "inside", (600, 450), (600, 450)),
        (SMALL_LANDSCAPE, "outside", (800, 600), (800, 600)),
        (SMALL_LANDSCAPE, "fill", (600, 600), (600, 600)),
        (SMALL_PORTRAIT, "cover", (600, 800), (600, 600)),
        (SMALL_PORTRAIT, "contain", (450, 600), (600, 600)),
        (SMALL_PORTRAIT, "inside", (450, 600), (450, 600)),
        (SMALL_PORTRAIT, "outside", (600, 800), (600, 800)),
        (SMALL_PORTRAIT, "fill", (600, 600), (600, 600)),
    ],
)
def test_a_small_source_is_upscaled_with_enlarge(size, fit, scaled, box):
    assert planned(size, SQUARE_BOX, fit, enlarge=True) == Plan(scaled=scaled, box=box)


@pytest.mark.parametrize(
    ("size", "fit", "box"),
    [
        (SMALL_LANDSCAPE, "cover", (400, 300)),
        (SMALL_LANDSCAPE, "contain", (600, 600)),  # contain still pads to the exact box
        (SMALL_LANDSCAPE, "inside", (400, 300)),
        (SMALL_LANDSCAPE, "outside", (400, 300)),
        (SMALL_LANDSCAPE, "fill", (400, 300)),
        (SMALL_PORTRAIT, "cover", (300, 400)),
        (SMALL_PORTRAIT, "contain", (600, 600)),
        (SMALL_PORTRAIT, "inside", (300, 400)),
        (SMALL_PORTRAIT, "outside", (300, 400)),
        (SMALL_PORTRAIT, "fill", (300, 400)),
    ],
)
def test_a_small_source_is_never_upscaled_without_enlarge(size, fit, box):
    assert planned(size, SQUARE_BOX, fit) == Plan(scaled=size, box=box)


def test_cover_without_enlarge_crops_only_the_side_that_overflows():
    assert planned((1000, 500), (800, 800), "cover") == Plan(scaled=(1000, 500), box=(800, 500))


@pytest.mark.parametrize("fit", ["cover", "contain", "inside", "outside", "fill"])
@pytest.mark.parametrize(
    ("size", "target", "enlarge", "scaled"),
    [
        (LANDSCAPE, (800, None), False, (800, 600)),
        (LANDSCAPE, (None, 300), False, (400, 300)),
        (PORTRAIT, (300, None), False, (300, 400)),
        (PORTRAIT, (None, 800), False, (600, 800)),
        (SMALL_LANDSCAPE, (800, None), False, (400, 300)),
        (SMALL_LANDSCAPE, (800, None), True, (800, 600)),
        (SMALL_PORTRAIT, (None, 800), False, (300, 400)),
        (SMALL_PORTRAIT, (None, 800), True, (600, 800)),
    ],
)
def test_one_side_given_keeps_the_aspect_ratio_whatever_the_fit(size, target, enlarge, scaled, fit):
    assert planned(size, target, fit, enlarge) == Plan(scaled=scaled, box=scaled)


@pytest.mark.parametrize("enlarge", [False, True])
def test_no_target_keeps_the_source_size(enlarge):
    assert planned(LANDSCAPE, (None, None), "inside", enlarge) == Plan(LANDSCAPE, LANDSCAPE)


def test_rounding_lands_on_the_nearest_pixel():
    # 1000 x 333 to 300 wide: 99.9 rows, so 100.
    assert planned((1000, 333), (300, None), "inside").scaled == (300, 100)


# --- the output clamp ---------------------------------------------------------------------


def test_a_source_over_the_max_side_is_shrunk_to_it():
    assert planned((10000, 5000), (None, None), "inside") == Plan((8192, 4096), (8192, 4096))


def test_a_source_over_the_max_pixels_is_shrunk_under_them():
    p = planned((8000, 8000), (None, None), "inside")
    assert p == Plan((6324, 6324), (6324, 6324))
    assert MAX_PIXELS < 6325 * 6325  # so 6324 is the largest square that fits


def test_an_enlarged_target_over_the_max_pixels_is_shrunk_under_them():
    p = planned((1000, 1000), (8192, 8192), "inside", enlarge=True)
    assert p.scaled == p.box == (6324, 6324)


def test_a_contain_box_over_the_max_pixels_shrinks_box_and_image_together():
    p = planned(LANDSCAPE, (8000, 8000), "contain")
    assert p.box[0] * p.box[1] <= MAX_PIXELS
    assert p.box == (6324, 6324)
    assert p.scaled == (3162, 2371)


@pytest.mark.parametrize(
    ("max_side", "max_pixels"), [(8192, 40_000_000), (1000, 10**12), (5000, 1_000_000)]
)
@pytest.mark.parametrize("fit", ["cover", "contain", "inside", "outside", "fill"])
def test_no_plan_exceeds_the_output_limits(fit, max_side, max_pixels):
    for size in [(50_000, 1000), (1000, 50_000), (12_345, 9_876), (640, 480)]:
        for target in [(None, None), (8192, None), (None, 8192), (8192, 8192), (8192, 10)]:
            p = planned(size, target, fit, True, max_side, max_pixels)
            assert max(p.box) <= max_side, (size, target)
            assert p.box[0] * p.box[1] <= max_pixels, (size, target)
            assert min(p.box) >= 1
            assert min(p.scaled) >= 1


def test_a_clamped_long_side_lands_exactly_on_the_max_side():
    # 8192 / 8795 * 8795 is 8191.999... in floating point; floor makes it 8191.
    assert planned((8795, 1000), (None, None), "inside").scaled == (8192, 931)


# --- shrink on load -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("source", "scaled", "fast", "quality"),
    [
        ((4000, 3000), (800, 600), 4, 2),
        ((4000, 3000), (400, 300), 8, 4),
        ((4000, 3000), (2000, 1500), 2, 1),
        ((8000, 6000), (100, 75), 8, 8),
        ((1000, 1000), (500, 500), 2, 1),
        ((1000, 1000), (501, 501), 1, 1),
        ((1000, 1000), (900, 900), 1, 1),
        ((400, 300), (800, 600), 1, 1),
        ((4000, 1000), (800, 600), 1, 1),  # both sides must keep the margin (fill stretches)
    ],
)
def test_shrink_factor_follows_the_fast_and_quality_rules(source, scaled, fast, quality):
    assert shrink_factor(source, scaled, "fast") == fast
    assert shrink_factor(source, scaled, "quality") == quality


# --- gravity ------------------------------------------------------------------------------

SCALED = (1000, 800)
BOX = (600, 600)  # 400 px free across, 200 px free down


@pytest.mark.parametrize(
    ("gravity", "offset"),
    [
        ("center", (200, 100)),
        ("n", (200, 0)),
        ("s", (200, 200)),
        ("e", (400, 100)),
        ("w", (0, 100)),
        ("ne", (400, 0)),
        ("nw", (0, 0)),
        ("se", (400, 200)),
        ("sw", (0, 200)),
    ],
)
def test_a_compass_gravity_keeps_that_side(gravity, offset):
    assert gravity_offset(gravity, None, SCALED, BOX) == offset


@pytest.mark.parametrize(
    ("focal", "offset"),
    [
        ((0.5, 0.5), (200, 100)),
        ((0.6, 0.4), (300, 20)),
        ((0.0, 0.0), (0, 0)),
        ((1.0, 1.0), (400, 200)),
        ((0.25, 0.75), (0, 200)),
        ((0.9, 0.1), (400, 0)),
    ],
)
def test_a_focal_point_centres_the_box_clamped_at_the_edges(focal, offset):
    assert gravity_offset("fp", focal, SCALED, BOX) == offset


@pytest.mark.parametrize("gravity", ["center", "se", "nw"])
def test_a_box_as_large_as_the_image_has_no_offset(gravity):
    assert gravity_offset(gravity, None, BOX, BOX) == (0, 0)
    assert gravity_offset("fp", (1.0, 0.0), BOX, BOX) == (0, 0)


def test_the_offset_keeps_the_box_inside_the_image():
    for fx in (0.0, 0.1, 0.33, 0.5, 0.77, 1.0):
        for fy in (0.0, 0.5, 1.0):
            x, y = gravity_offset("fp", (fx, fy), SCALED, BOX)
            assert 0 <= x <= SCALED[0] - BOX[0]
            assert 0 <= y <= SCALED[1] - BOX[1]
            assert math.isclose(x, min(max(0, fx * 1000 - 300), 400), abs_tol=0.5)
