"""An image's colour space for the metadata answer: libvips' interpretation, refined by the
ICC profile's description where that names a wide-gamut RGB space. Bounded like exif.py:
the profile comes from an upload and its tag table is hostile until checked."""

from __future__ import annotations

import struct

import pyvips

from server.imaging.exif import clean_text, tidy

# libvips interpretations -> the names we answer (16-bit and linear variants fold into theirs).
_INTERPRETATIONS = {
    "srgb": "srgb",
    "rgb": "srgb",
    "rgb16": "srgb",
    "scrgb": "srgb",
    "b-w": "b-w",
    "grey16": "b-w",
    "cmyk": "cmyk",
    "lab": "lab",
    "labs": "lab",
    "labq": "lab",
}
# Wide-gamut RGB profiles a client may need to know about, by their ICC description: "p3"
# matches Apple's "Display P3" and libvips' compact built-in P3 profile, described "sP3C".
_ICC_SPACES = (("p3", "display-p3"), ("adobe rgb", "adobe-rgb"), ("prophoto", "prophoto-rgb"))


def color_space(image: pyvips.Image, icc: str | None) -> str:
    """The image's colour space: a wide-gamut RGB named by its ICC profile, else libvips'
    interpretation (srgb, b-w, cmyk, lab, or its own name for anything rarer)."""
    name = (icc or "").lower()
    for needle, space in _ICC_SPACES:
        if needle in name and image.interpretation in ("srgb", "rgb", "rgb16"):
            return space
    interpretation = str(image.interpretation)
    return _INTERPRETATIONS.get(interpretation, interpretation)


def icc_description(profile: bytes) -> str | None:
    """The ICC profile's description ('desc' tag, v2 text or v4 mluc), bounded like exif."""
    (count,) = struct.unpack(">L", profile[128:132]) if len(profile) >= 132 else (0,)
    for i in range(min(count, 64)):
        entry = profile[132 + 12 * i : 144 + 12 * i]
        if len(entry) < 12 or entry[:4] != b"desc":
            continue
        at, size = struct.unpack(">LL", entry[4:12])
        tag = profile[at : at + min(size, 4096)]
        if tag[:4] == b"desc" and len(tag) >= 12:
            (length,) = struct.unpack(">L", tag[8:12])
            return clean_text(tag[12 : 12 + length])
        if tag[:4] == b"mluc" and len(tag) >= 28:
            length, offset = struct.unpack(">LL", tag[20:28])  # the first record's text
            return tidy(tag[offset : offset + length].decode("utf-16-be", errors="replace"))
        return None
    return None
