"""A tiny EXIF (TIFF) writer for the tests: IFD0 with optional Exif and GPS IFDs, laid out as
cameras do (header, IFDs, then the values too long to sit in an entry). Hostile blobs are
made from these by hand, with `entry` and struct."""

from __future__ import annotations

import struct
import zlib
from collections.abc import Sequence

ASCII, BYTE, SHORT, LONG, RATIONAL, UNDEFINED, SRATIONAL = 2, 1, 3, 4, 5, 7, 10
Value = str | bytes | Sequence[int] | Sequence[tuple[int, int]]
Entry = tuple[int, int, Value]  # tag, TIFF type, value

_SIZES = {BYTE: 1, ASCII: 1, SHORT: 2, LONG: 4, RATIONAL: 8, UNDEFINED: 1, SRATIONAL: 8}
_CODES = {BYTE: "B", SHORT: "H", LONG: "L", RATIONAL: "LL", SRATIONAL: "ll"}


def encode(kind: int, value: Value, order: str = "<") -> tuple[int, bytes]:
    """(count, bytes) of a value: text gets its NUL, numbers their TIFF type's layout."""
    if kind in (ASCII, UNDEFINED):
        raw = value.encode() if isinstance(value, str) else bytes(value)  # type: ignore[arg-type]
        raw += b"\x00" if kind == ASCII else b""
        return len(raw), raw
    items = list(value)  # type: ignore[arg-type]
    flat = [x for item in items for x in (item if isinstance(item, tuple) else (item,))]
    return len(items), struct.pack(order + _CODES[kind] * len(items), *flat)


def build(
    ifd0: Sequence[Entry],
    exif: Sequence[Entry] = (),
    gps: Sequence[Entry] = (),
    order: str = "<",
    prefix: bytes = b"Exif\x00\x00",
) -> bytes:
    """An EXIF blob as libvips gives it for a JPEG (with `prefix`), or bare TIFF (b"")."""
    ifds: list[list[Entry]] = [list(ifd0), list(exif), list(gps)]
    counts = [len(ifd0) + bool(exif) + bool(gps), len(exif), len(gps)]  # IFD0 + pointers
    sizes = [2 + 12 * count + 4 if count else 0 for count in counts]
    starts = [8, 8 + sizes[0], 8 + sizes[0] + sizes[1]]
    if exif:
        ifds[0].append((0x8769, LONG, [starts[1]]))
    if gps:
        ifds[0].append((0x8825, LONG, [starts[2]]))
    data_at = 8 + sum(sizes)
    body, extra = b"", b""
    for entries, size in zip(ifds, sizes, strict=True):
        table = b""
        for tag, kind, value in sorted(entries, key=lambda e: e[0]):
            count, raw = encode(kind, value, order)
            if len(raw) <= 4:
                field = raw.ljust(4, b"\x00")
            else:
                field = struct.pack(order + "L", data_at + len(extra))
                extra += raw + b"\x00" * (len(raw) % 2)  # values start on word boundaries
            table += struct.pack(order + "HHL", tag, kind, count) + field
        block = struct.pack(order + "H", len(entries)) + table + b"\x00\x00\x00\x00"
        body += block if entries else b""
        assert len(block) == size or not entries
    magic = b"II*\x00" if order == "<" else b"MM\x00*"
    return prefix + magic + struct.pack(order + "L", 8) + body + extra


def entry(tag: int, kind: int, count: int, field: bytes | int, order: str = "<") -> bytes:
    """One raw 12-byte IFD entry, its count and value field as given (for hostile blobs)."""
    raw = struct.pack(order + "L", field) if isinstance(field, int) else field.ljust(4, b"\x00")
    return struct.pack(order + "HHL", tag, kind, count) + raw


def dms(degrees: int, minutes: int, seconds_x100: int) -> list[tuple[int, int]]:
    return [(degrees, 1), (minutes, 1), (seconds_x100, 100)]


# A phone photo's worth of tags: the values the metadata tests check.
CAMERA_IFD0: list[Entry] = [
    (0x010F, ASCII, "Google"),
    (0x0110, ASCII, "Pixel 7"),
    (0x0112, SHORT, [1]),
    (0x0131, ASCII, "HDR+ 1.0.540104767zd"),
    (0x0132, ASCII, "2024:05:01 14:03:25"),
]
CAMERA_EXIF: list[Entry] = [
    (0x829A, RATIONAL, [(1, 250)]),
    (0x829D, RATIONAL, [(185, 100)]),
    (0x8827, SHORT, [64]),
    (0x9003, ASCII, "2024:05:01 14:03:22"),
    (0x9004, ASCII, "2024:05:01 14:03:22"),
    (0x9010, ASCII, "+02:00"),
    (0x9011, ASCII, "+02:00"),
    (0x9291, ASCII, "120"),
    (0x9209, SHORT, [16]),
    (0x920A, RATIONAL, [(681, 100)]),
    (0xA405, SHORT, [24]),
    (0xA434, ASCII, "Pixel 7 back camera 6.81mm f/1.85"),
]
CAMERA_GPS: list[Entry] = [
    (0x01, ASCII, "S"),
    (0x02, RATIONAL, dms(33, 51, 3150)),  # Sydney Opera House: 33°51'31.5" S
    (0x03, ASCII, "E"),
    (0x04, RATIONAL, dms(151, 12, 5130)),  # 151°12'51.3" E
    (0x05, BYTE, [0]),
    (0x06, RATIONAL, [(1234, 100)]),
    (0x07, RATIONAL, [(12, 1), (3, 1), (22, 1)]),
    (0x1D, ASCII, "2024:05:01"),
]

# Every other tag the metadata answer reads, so an answer built from all of these has every
# documented key (docs/metadata.md).
MORE_IFD0: list[Entry] = [
    (0x010E, ASCII, "Picos de Europa from the north"),
    (0x011A, RATIONAL, [(72, 1)]),
    (0x011B, RATIONAL, [(72, 1)]),
    (0x0128, SHORT, [2]),
    (0x013B, ASCII, "Aitzol Berasategi"),
    (0x013C, ASCII, "Pixel 7"),
    (0x8298, ASCII, "CC-BY-4.0"),
]
MORE_EXIF: list[Entry] = [
    (0x8822, SHORT, [2]),
    (0x9204, SRATIONAL, [(-1, 3)]),
    (0x9207, SHORT, [5]),
    (0xA403, SHORT, [0]),
    (0xA433, ASCII, "Google"),
]
MORE_GPS: list[Entry] = [(0x10, ASCII, "T"), (0x11, RATIONAL, [(2705, 10)])]
EVERYTHING = (CAMERA_IFD0 + MORE_IFD0, CAMERA_EXIF + MORE_EXIF, CAMERA_GPS + MORE_GPS)


def fan_out(pointers: int) -> bytes:
    """A bare TIFF blob whose IFD0 holds `pointers` Exif and GPS IFD pointers, every one back
    to IFD0: libexif follows each, again and again (a 1.2 KB one holds libvips for seconds)."""
    ifd0 = entry(0x010F, ASCII, 4, b"Abc\x00")
    ifd0 += (entry(0x8769, LONG, 1, 8) + entry(0x8825, LONG, 1, 8)) * (pointers // 2)
    return b"II*\x00" + struct.pack("<LH", 8, 1 + pointers // 2 * 2) + ifd0 + b"\x00" * 4


def in_jpeg(jpeg: bytes, blob: bytes) -> bytes:
    """`jpeg` with `blob` (bare TIFF) as an APP1 Exif segment right after SOI, byte for byte
    (libvips would rewrite it through libexif on save)."""
    payload = b"Exif\x00\x00" + blob
    return jpeg[:2] + b"\xff\xe1" + struct.pack(">H", len(payload) + 2) + payload + jpeg[2:]


def in_png(png: bytes, blob: bytes) -> bytes:
    """`png` with `blob` as an eXIf chunk before its first IDAT."""
    at = png.index(b"IDAT") - 4
    crc = zlib.crc32(b"eXIf" + blob) & 0xFFFFFFFF
    chunk = struct.pack(">L", len(blob)) + b"eXIf" + blob + struct.pack(">L", crc)
    return png[:at] + chunk + png[at:]


def in_webp(webp: bytes, blob: bytes) -> bytes:
    """`webp` (an extended WebP that has an EXIF chunk) with that chunk's payload replaced."""
    at = webp.index(b"EXIF", 12)
    (length,) = struct.unpack("<L", webp[at + 4 : at + 8])
    end = at + 8 + length + (length & 1)
    chunk = b"EXIF" + struct.pack("<L", len(blob)) + blob + b"\x00" * (len(blob) & 1)
    out = bytearray(webp[:at] + chunk + webp[end:])
    out[4:8] = struct.pack("<L", len(out) - 8)
    return bytes(out)


def in_heif(heif: bytes, blob: bytes) -> bytes:
    """`heif` (a HEIF or AVIF with one Exif item, as libheif writes it: one extent, 32-bit
    fields in `iloc`) with that item's payload replaced by `blob` (bare TIFF), behind the
    4-byte offset and Exif header libheif writes. The new payload goes in a `free` box at the
    end and the item's `iloc` entry is pointed at it, so `blob` may be any length."""
    payload_at = heif.index(b"\x00\x00\x00\x06Exif\x00\x00")
    meta = heif.index(b"meta") - 4
    meta_end = meta + int.from_bytes(heif[meta : meta + 4], "big")
    field = struct.pack(">L", payload_at)
    at = heif.index(field, meta, meta_end)
    assert heif.count(field, meta, meta_end) == 1, "the Exif item is not found in iloc"
    payload = b"\x00\x00\x00\x06Exif\x00\x00" + blob
    box = struct.pack(">L4s", 8 + len(payload), b"free") + payload
    out = bytearray(heif + box)
    if heif[at + 4 : at + 10] == b"\x00\x01\x00\x00\x00\x00":
        # base offset = the payload, then one extent at offset 0 (libvips' AVIF)
        out[at : at + 4] = struct.pack(">L", len(heif) + 8)
        out[at + 10 : at + 14] = struct.pack(">L", len(payload))
    else:  # the extent's own offset, then its length (the HEIC fixtures)
        out[at : at + 8] = struct.pack(">LL", len(heif) + 8, len(payload))
    return bytes(out)
