"""server/formats.py: the default output format and `fmt=auto` negotiation from `Accept`."""

from __future__ import annotations

import pytest

from server.formats import accepted, choose
from server.spec import FORMATS, TransformSpec

CHROMIUM = "image/avif,image/webp,image/apng,image/svg+xml,image/*,*/*;q=0.8"
FIREFOX = "image/avif,image/webp,*/*"
SAFARI_17 = (
    "image/webp,image/avif,image/jxl,image/heic,image/heic-sequence,video/*;q=0.8,"
    "image/png,image/svg+xml,image/*;q=0.8,*/*;q=0.5"
)
SAFARI_14 = "image/webp,image/png,image/svg+xml,image/*;q=0.8,video/*;q=0.8,*/*;q=0.5"
SAFARI_13 = "image/png,image/svg+xml,image/*;q=0.8,video/*;q=0.8,*/*;q=0.5"
CURL = "*/*"

DEFAULT = TransformSpec()
AUTO = TransformSpec(fmt="auto")
STILL, ANIMATED = 1, 12


# --- no fmt: the source's kind --------------------------------------------------------------


@pytest.mark.parametrize("source", ["jpeg", "png", "gif"])
@pytest.mark.parametrize("alpha", [False, True])
def test_the_default_format_keeps_jpeg_png_and_gif(source, alpha):
    assert choose(DEFAULT, source, alpha, STILL, CHROMIUM) == (source, False)


def test_the_default_format_keeps_an_animated_gif_a_gif():
    assert choose(DEFAULT, "gif", False, ANIMATED, CHROMIUM) == ("gif", False)


# The pipeline passes a HEIF source's kind as "avif" (SourceInfo.output_kind).
@pytest.mark.parametrize("source", ["webp", "avif"])
@pytest.mark.parametrize(("alpha", "fmt"), [(True, "png"), (False, "jpeg")])
def test_the_default_format_for_webp_and_heif_is_png_with_alpha_else_jpeg(source, alpha, fmt):
    assert choose(DEFAULT, source, alpha, STILL, CHROMIUM) == (fmt, False)


# --- an explicit fmt -----------------------------------------------------------------------


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("source", ["jpeg", "png", "gif", "webp"])
def test_an_explicit_format_is_kept_whatever_the_source_and_accept(fmt, source):
    spec = TransformSpec(fmt=fmt)
    assert choose(spec, source, True, ANIMATED, CURL) == (fmt, False)
    assert choose(spec, source, False, STILL, CHROMIUM) == (fmt, False)


# --- fmt=auto ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("accept", "alpha", "fmt"),
    [
        (CHROMIUM, False, "avif"),
        (CHROMIUM, True, "avif"),
        (FIREFOX, False, "avif"),
        (SAFARI_17, False, "avif"),
        (SAFARI_14, False, "webp"),
        (SAFARI_14, True, "webp"),
        (SAFARI_13, False, "jpeg"),
        (SAFARI_13, True, "png"),
        (CURL, False, "jpeg"),
        (CURL, True, "png"),
        ("image/*", False, "jpeg"),
        ("", False, "jpeg"),
        ("", True, "png"),
        ("image/avif;q=0", False, "jpeg"),
        ("image/avif;q=0,*/*", True, "png"),
        ("image/avif; q=0.0, image/webp", False, "webp"),
        ("image/avif;q=0.1,image/webp", False, "avif"),
        ("IMAGE/AVIF", False, "avif"),
        ("image/webp;q=0,image/jpeg", False, "jpeg"),
        ("image/avif;q=bogus,image/webp", False, "webp"),
    ],
)
def test_auto_picks_from_the_accept_header_for_a_still(accept, alpha, fmt):
    assert choose(AUTO, "jpeg", alpha, STILL, accept) == (fmt, True)


@pytest.mark.parametrize("accept", [CHROMIUM, FIREFOX, SAFARI_17, "image/avif"])
def test_auto_never_picks_avif_for_an_animated_source(accept):
    fmt, negotiated = choose(AUTO, "gif", False, ANIMATED, accept)
    assert fmt != "avif"
    assert negotiated is True


@pytest.mark.parametrize(
    ("accept", "fmt"),
    [
        (CHROMIUM, "webp"),
        (SAFARI_14, "webp"),
        (CURL, "gif"),
        (SAFARI_13, "gif"),
        ("image/avif", "gif"),
    ],
)
@pytest.mark.parametrize("source", ["gif", "webp"])
def test_auto_for_an_animated_source_is_webp_if_accepted_else_gif(accept, fmt, source):
    assert choose(AUTO, source, True, ANIMATED, accept) == (fmt, True)


@pytest.mark.parametrize(
    ("accept", "alpha", "fmt"),
    [
        (CHROMIUM, False, "avif"),
        (SAFARI_14, False, "webp"),
        (CURL, False, "jpeg"),
        (CURL, True, "png"),
    ],
)
def test_auto_with_anim_0_treats_an_animated_source_as_a_still(accept, alpha, fmt):
    spec = TransformSpec(fmt="auto", anim=False)
    assert choose(spec, "gif", alpha, ANIMATED, accept) == (fmt, True)


@pytest.mark.parametrize("spec", [DEFAULT, AUTO, TransformSpec(fmt="webp")])
def test_the_format_is_negotiated_only_for_auto(spec):
    _, negotiated = choose(spec, "jpeg", False, STILL, CHROMIUM)
    assert negotiated is (spec.fmt == "auto")


# --- accepted() ----------------------------------------------------------------------------


def test_accepted_lists_the_types_with_a_positive_q():
    assert {"image/avif", "image/webp", "image/apng"} <= accepted(CHROMIUM)
    assert accepted("image/avif;q=0, image/webp;q=0.5") == {"image/webp"}


def test_accepted_lowercases_and_trims_media_types():
    assert accepted(" Image/WebP ; q=1 ,IMAGE/AVIF") == {"image/webp", "image/avif"}


@pytest.mark.parametrize("accept", ["", ",", " , ;q=1"])
def test_accepted_of_an_empty_header_is_empty(accept):
    assert accepted(accept) == set()


def test_an_unreadable_q_counts_as_refused():
    assert accepted("image/avif;q=high") == set()
