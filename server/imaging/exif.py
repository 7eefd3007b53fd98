"""EXIF blobs (TIFF-structured) -> the tag values of IFD0, the Exif IFD and the GPS IFD.

Pure, and bounded whatever the bytes say: the blob comes from an uploaded image, so every
count and offset in it is hostile until checked. The parser visits at most three IFDs, each
once (IFD0 and the two it points to; the next-IFD chain, IFD1's thumbnail, the interop IFD
and maker notes are never followed), reads at most MAX_ENTRIES entries in all, decodes only
the tags in WANTED, and never reads a value longer than MAX_VALUE_BYTES. Loops cannot hang
it and counts cannot make it allocate: malformed parts are skipped, never raised.
"""

from __future__ import annotations

import math
import struct
import unicodedata
from dataclasses import dataclass, field

# Generous for real files (a camera's IFD0 + Exif + GPS IFDs hold ~100 entries) and small
# enough that the worst blob costs a few milliseconds.
MAX_BLOB_BYTES = 1 << 20
MAX_ENTRIES = 1024
MAX_VALUE_BYTES = 1024
MAX_STRING_CHARS = 256

EXIF_IFD_POINTER = 0x8769
GPS_IFD_POINTER = 0x8825

# Which tags we decode, per IFD, and the value kind each must have ("text" or "number").
# A tag stored with a type of the other kind is dropped, not guessed at.
WANTED: dict[str, dict[int, str]] = {
    "ifd0": {
        0x010E: "text",  # ImageDescription
        0x010F: "text",  # Make
        0x0110: "text",  # Model
        0x0112: "number",  # Orientation
        0x011A: "number",  # XResolution
        0x011B: "number",  # YResolution
        0x0128: "number",  # ResolutionUnit
        0x0131: "text",  # Software
        0x0132: "text",  # DateTime (ModifyDate)
        0x013B: "text",  # Artist
        0x013C: "text",  # HostComputer
        0x8298: "text",  # Copyright
    },
    "exif": {
        0x829A: "number",  # ExposureTime
        0x829D: "number",  # FNumber
        0x8822: "number",  # ExposureProgram
        0x8827: "number",  # ISO (PhotographicSensitivity)
        0x9003: "text",  # DateTimeOriginal
        0x9004: "text",  # CreateDate (DateTimeDigitized)
        0x9010: "text",  # OffsetTime
        0x9011: "text",  # OffsetTimeOriginal
        0x9012: "text",  # OffsetTimeDigitized
        0x9204: "number",  # ExposureBiasValue
        0x9207: "number",  # MeteringMode
        0x9209: "number",  # Flash
        0x920A: "number",  # FocalLength
        0x9290: "text",  # SubSecTime
        0x9291: "text",  # SubSecTimeOriginal
        0x9292: "text",  # SubSecTimeDigitized
        0xA001: "number",  # ColorSpace
        0xA403: "number",  # WhiteBalance
        0xA405: "number",  # FocalLengthIn35mmFormat
        0xA433: "text",  # LensMake
        0xA434: "text",  # LensModel
    },
    "gps": {
        0x01: "text",  # GPSLatitudeRef
        0x02: "number",  # GPSLatitude
        0x03: "text",  # GPSLongitudeRef
        0x04: "number",  # GPSLongitude
        0x05: "number",  # GPSAltitudeRef
        0x06: "number",  # GPSAltitude
        0x07: "number",  # GPSTimeStamp
        0x10: "text",  # GPSImgDirectionRef
        0x11: "number",  # GPSImgDirection
        0x1D: "text",  # GPSDateStamp
    },
}

Value = str | tuple[float, ...]

# TIFF type -> (bytes per item, struct code, kind). Rationals are two codes per item.
_TYPES: dict[int, tuple[int, str, str]] = {
    1: (1, "B", "number"),  # BYTE
    2: (1, "s", "text"),  # ASCII
    3: (2, "H", "number"),  # SHORT
    4: (4, "L", "number"),  # LONG
    5: (8, "LL", "number"),  # RATIONAL
    6: (1, "b", "number"),  # SBYTE
    7: (1, "s", "text"),  # UNDEFINED: some writers store strings so; numbers never
    8: (2, "h", "number"),  # SSHORT
    9: (4, "l", "number"),  # SLONG
    10: (8, "ll", "number"),  # SRATIONAL
    11: (4, "f", "number"),  # FLOAT
    12: (8, "d", "number"),  # DOUBLE
}


@dataclass(slots=True)
class Tags:
    """The decoded tags of each IFD by tag number, and how many entries were read (the bound
    the hostile-input tests check)."""

    ifd0: dict[int, Value] = field(default_factory=dict)
    exif: dict[int, Value] = field(default_factory=dict)
    gps: dict[int, Value] = field(default_factory=dict)
    entries_read: int = 0


def parse(blob: bytes) -> Tags:
    """The tags in `blob` (raw TIFF, or with a JPEG APP1 "Exif\\0\\0" prefix); whatever can
    be read of a malformed blob, and empty Tags for junk. Never raises."""
    tags = Tags()
    data = bytes(blob[:MAX_BLOB_BYTES])
    # JPEG APP1 starts "Exif\0\0"; HEIF's Exif item has a 4-byte offset first; PNG eXIf and
    # WebP EXIF are bare TIFF. Look for the TIFF header near the start rather than trust one.
    starts = [at for at in (data.find(b"II*\x00", 0, 64), data.find(b"MM\x00*", 0, 64)) if at >= 0]
    data = data[min(starts) :] if starts else b""
    if data[:4] == b"II*\x00":
        order = "<"
    elif data[:4] == b"MM\x00*":
        order = ">"
    else:
        return tags
    if len(data) < 8:
        return tags
    (ifd0_at,) = struct.unpack(order + "L", data[4:8])
    pointers = _read_ifd(data, order, ifd0_at, WANTED["ifd0"], tags.ifd0, tags)
    seen = {ifd0_at}
    for tag, target in ((EXIF_IFD_POINTER, tags.exif), (GPS_IFD_POINTER, tags.gps)):
        at = pointers.get(tag)
        # Each IFD once: a pointer back to IFD0 or to the other IFD is a loop, not data.
        if at is None or at in seen:
            continue
        seen.add(at)
        _read_ifd(data, order, at, WANTED["exif" if target is tags.exif else "gps"], target, tags)
    return tags


def _read_ifd(
    data: bytes, order: str, at: int, wanted: dict[int, str], out: dict[int, Value], tags: Tags
) -> dict[int, int]:
    """Decode the wanted tags of the IFD at `at` into `out`; answer the sub-IFD pointers it
    holds (only IFD0's are followed)."""
    pointers: dict[int, int] = {}
    tried: set[int] = set()
    if at < 8 or at + 2 > len(data):
        return pointers
    (count,) = struct.unpack(order + "H", data[at : at + 2])
    # The count is trusted only as far as the blob and the budget reach.
    fits = (len(data) - at - 2) // 12
    count = min(count, fits, MAX_ENTRIES - tags.entries_read)
    for i in range(max(count, 0)):
        entry = at + 2 + 12 * i
        tag, kind, n = struct.unpack(order + "HHL", data[entry : entry + 8])
        tags.entries_read += 1
        if tag in (EXIF_IFD_POINTER, GPS_IFD_POINTER):
            if kind in (4, 13) and n == 1:  # LONG or IFD
                pointers[tag] = struct.unpack(order + "L", data[entry + 8 : entry + 12])[0]
            continue
        # The first entry of a tag decides it, good or bad: a blob repeating a tag 1000 times
        # costs one decode, not 1000.
        if tag not in wanted or tag in tried:
            continue
        tried.add(tag)
        if kind in _TYPES and _TYPES[kind][2] == wanted[tag]:
            value = _value(data, order, kind, n, entry + 8)
            if value is not None:
                out[tag] = value
    return pointers


def _value(data: bytes, order: str, kind: int, n: int, at: int) -> Value | None:
    size, code, _ = _TYPES[kind]
    length = size * n
    if n == 0 or (length > MAX_VALUE_BYTES and code != "s"):
        return None
    if length > 4:  # stored elsewhere: the entry holds its offset
        (at,) = struct.unpack(order + "L", data[at : at + 4])
    if at + length > len(data):  # a count or offset past the end: corrupt, not data
        return None
    if code == "s":  # a long text is cut, not refused: its start is still the text
        return clean_text(data[at : at + min(length, MAX_VALUE_BYTES)])
    raw = data[at : at + length]
    items = struct.unpack(order + code * n, raw)
    if len(code) == 2:  # rationals: a zero denominator is not a number
        pairs = list(zip(items[0::2], items[1::2], strict=True))
        if any(den == 0 for _, den in pairs):
            return None
        numbers = tuple(num / den for num, den in pairs)
    else:
        numbers = tuple(items)  # ints stay ints: ISO 200, not 200.0
    return numbers if all(math.isfinite(x) for x in numbers) else None


def clean_text(raw: bytes) -> str | None:
    """A string value as text a client can show: up to its first NUL, UTF-8 (else Latin-1,
    which cameras also write), control and format characters dropped, trimmed, capped."""
    raw = raw.split(b"\x00", 1)[0]
    try:
        return tidy(raw.decode("utf-8"))
    except UnicodeDecodeError:
        return tidy(raw.decode("latin-1"))


def tidy(text: str) -> str | None:
    """`text` without control, format or unpaired surrogate characters, its whitespace runs
    made single spaces, capped at MAX_STRING_CHARS; None when nothing is left."""
    text = "".join(" " if unicodedata.category(c)[0] == "C" else c for c in text)
    text = " ".join(text.split())[:MAX_STRING_CHARS]
    return text or None
