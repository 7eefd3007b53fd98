"""Rebuild the HEIC test images from ../shared/corpus (see SOURCES.md here).

imgcdn only decodes HEIC (pi-heif has no encoder), so these are made once, in a scratch
venv outside the project with pillow-heif (whose wheels bundle the x265 encoder, GPLv2),
and the bytes are committed. The tests never import pillow-heif.

    python3.11 -m venv /tmp/heicenc && /tmp/heicenc/bin/pip install pillow-heif
    /tmp/heicenc/bin/python tests/images/make_heic.py ../shared/corpus
"""

import io
import sys
from pathlib import Path

import pillow_heif
from PIL import Image

corpus = Path(sys.argv[1])
out = Path(__file__).parent


def exif_orientation(value: int) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = value
    return exif.tobytes()


def save(name: str, heif: pillow_heif.HeifFile, **options: object) -> None:
    buf = io.BytesIO()
    heif.save(buf, **options)
    (out / name).write_bytes(buf.getvalue())


def orient6() -> None:
    # As a phone writes it: pixels coded sideways (640x426), an `irot` box turning them
    # 90 degrees clockwise for display, and EXIF Orientation 6 saying the same thing once
    # more. Upright it is 426x640. A decoder that applied both would turn it twice.
    stored = Image.open(corpus / "portrait-orient6.jpg").convert("RGB").resize((640, 426))
    heif = pillow_heif.from_bytes("RGB", stored.size, stored.tobytes())
    # pillow-heif hands the EXIF orientation to libheif's encoder, which writes `irot`.
    save("orient6.heic", heif, quality=60, exif=exif_orientation(6))


def alpha() -> None:
    im = Image.open(corpus / "cutout-alpha.png").convert("RGBA").resize((300, 203))
    save("alpha.heic", pillow_heif.from_pillow(im), quality=60)


def multi() -> None:
    # Two top-level images, the primary one second (640x480, the dragonfly photo), plus a
    # 160x120 thumbnail of the primary: a reader that takes image 0 gets the wrong picture.
    other = Image.open(corpus / "sunset-cmyk.jpg").convert("RGB").resize((200, 133))
    other.info.clear()  # not the 940 KB CMYK profile: these pixels are RGB now
    primary = Image.open(corpus / "photo-12mp.jpg").convert("RGB").resize((640, 480))
    heif = pillow_heif.from_pillow(other)
    heif.add_from_pillow(primary)
    heif[1].info["thumbnails"] = [160]  # pillow-heif writes a thumbnail box per size
    save("multi.heic", heif, quality=50, primary_index=1)


def big_primary() -> None:
    # A real 4000x3000 primary image (a blurred, cheap-to-code upscale) beside a 64x48
    # image 0: the pixel limit must be checked on the primary image, not on the first one.
    small = Image.open(corpus / "photo-2mp.jpg").convert("RGB").resize((64, 48))
    big = small.resize((4000, 3000), Image.Resampling.BILINEAR)
    heif = pillow_heif.from_pillow(small)
    heif.add_from_pillow(big)
    save("big-primary.heic", heif, quality=10, primary_index=1)


for make in (orient6, alpha, multi, big_primary):
    make()
