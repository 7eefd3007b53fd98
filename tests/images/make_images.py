"""Rebuild the small test images from ../shared/corpus (see SOURCES.md here).

python tests/images/make_images.py ../shared/corpus
"""

import sys
from pathlib import Path

import pyvips

corpus = Path(sys.argv[1])
out = Path(__file__).parent


def photo() -> None:
    im = pyvips.Image.thumbnail(str(corpus / "photo-12mp.jpg"), 800)
    im.jpegsave(str(out / "photo.jpg"), Q=85, keep=0)


def portrait() -> None:
    # Stored sideways with EXIF orientation 6, as a phone writes it: 600x400 on disk,
    # 400x600 upright.
    im = pyvips.Image.new_from_file(str(corpus / "portrait-orient6.jpg"))
    small = im.resize(600 / im.width).copy()
    small.set_type(pyvips.GValue.gint_type, "orientation", 6)
    small.jpegsave(str(out / "orient6.jpg"), Q=85, keep=1)  # keep EXIF only


def cmyk() -> None:
    # Resize in CMYK (no colour conversion), then write a plain CMYK JPEG without the 940 KB
    # profile: libvips' built-in CMYK profile applies, as for most print files.
    im = pyvips.Image.new_from_file(str(corpus / "sunset-cmyk.jpg"))
    small = im.resize(300 / im.width).copy()
    small.remove("icc-profile-data")
    small.jpegsave(str(out / "cmyk.jpg"), Q=90, keep=0)


def p3() -> None:
    # The photo's pixels moved into Display P3 with the (small) P3 profile embedded: right
    # only if the server converts to sRGB with the embedded profile.
    im = pyvips.Image.thumbnail(str(corpus / "photo-2mp.jpg"), 400)
    im.icc_export(output_profile="p3").jpegsave(str(out / "p3.jpg"), Q=90, keep=8)


def alpha() -> None:
    im = pyvips.Image.thumbnail(str(corpus / "cutout-alpha.png"), 300)
    im.pngsave(str(out / "alpha.png"), compression=9, keep=0)


def animated() -> None:
    im = pyvips.Image.new_from_file(str(corpus / "pan-animated.gif"), n=6)
    page = im.get("page-height")
    frames = [im.crop(0, i * page, im.width, page).resize(0.25) for i in range(6)]
    strip = pyvips.Image.arrayjoin(frames, across=1).copy()
    strip.set_type(pyvips.GValue.gint_type, "page-height", frames[0].height)
    strip.set_type(pyvips.GValue.array_int_type, "delay", [100] * 6)
    strip.set_type(pyvips.GValue.gint_type, "loop", 0)
    strip.gifsave(str(out / "anim.gif"))


for make in (photo, portrait, cmyk, p3, alpha, animated):
    make()
