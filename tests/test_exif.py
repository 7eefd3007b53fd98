"""The EXIF parser (server/imaging/exif.py) on well-formed blobs and on every hostile shape we
know of: loops, huge counts, offsets past the end, bad types, zero denominators, dirty text.
Bounds are checked by counting (entries read, memory allocated), never by timing."""

from __future__ import annotations

import struct
import tracemalloc

import pytest
from exif_blobs import (
    ASCII,
    CAMERA_EXIF,
    CAMERA_GPS,
    CAMERA_IFD0,
    LONG,
    RATIONAL,
    SHORT,
    build,
    entry,
)

from server.imaging import exif
from server.imaging.exif import MAX_ENTRIES, MAX_STRING_CHARS, parse

MAKE, MODEL, ORIENTATION, SOFTWARE = 0x010F, 0x0110, 0x0112, 0x0131
EXPOSURE, FNUMBER, ISO = 0x829A, 0x829D, 0x8827


def tiff(*ifd0: bytes, extra: bytes = b"", next_ifd: int = 0) -> bytes:
    """A little-endian TIFF whose IFD0 (at 8) holds the raw entries given, `extra` after it."""
    table = struct.pack("<H", len(ifd0)) + b"".join(ifd0) + struct.pack("<L", next_ifd)
    return b"II*\x00" + struct.pack("<L", 8) + table + extra


def extra_at(*ifd0: bytes) -> int:
    """Where `tiff(*ifd0)` puts its `extra` bytes."""
    return 8 + 2 + 12 * len(ifd0) + 4


def test_a_camera_blob_reads_every_wanted_tag_of_its_three_ifds():
    tags = parse(build(CAMERA_IFD0, CAMERA_EXIF, CAMERA_GPS))
    assert tags.ifd0[MAKE] == "Google" and tags.ifd0[MODEL] == "Pixel 7"
    assert tags.ifd0[ORIENTATION] == (1,)
    assert tags.exif[EXPOSURE] == (0.004,) and tags.exif[FNUMBER] == (1.85,)
    assert tags.exif[ISO] == (64,)
    assert tags.gps[0x02] == (33.0, 51.0, 31.5) and tags.gps[0x01] == "S"
    assert tags.entries_read == len(CAMERA_IFD0) + 2 + len(CAMERA_EXIF) + len(CAMERA_GPS)


@pytest.mark.parametrize("prefix", [b"Exif\x00\x00", b"", b"\x00\x00\x00\x06Exif\x00\x00"])
@pytest.mark.parametrize("order", ["<", ">"])
def test_jpeg_png_and_heif_framings_in_either_byte_order_read_the_same(prefix, order):
    tags = parse(build(CAMERA_IFD0, CAMERA_EXIF, CAMERA_GPS, order=order, prefix=prefix))
    assert tags == parse(build(CAMERA_IFD0, CAMERA_EXIF, CAMERA_GPS))


@pytest.mark.parametrize(
    "blob",
    [
        b"",
        b"Exif\x00\x00",
        b"II*\x00",
        b"II*\x00\x08\x00",
        b"MM\x00*\xff\xff\xff\xff",
        b"junk" * 99,
    ],
)
def test_junk_and_truncated_headers_give_no_tags(blob):
    tags = parse(blob)
    assert (tags.ifd0, tags.exif, tags.gps) == ({}, {}, {})


def test_sub_ifd_pointers_back_to_ifd0_or_to_each_other_read_each_ifd_once():
    make = entry(MAKE, ASCII, 4, b"Abc\x00")
    loop = tiff(make, entry(0x8769, LONG, 1, 8), entry(0x8825, LONG, 1, 8))
    tags = parse(loop)
    assert tags.ifd0 == {MAKE: "Abc"} and tags.exif == {} and tags.gps == {}
    assert tags.entries_read == 3
    # Exif and GPS pointing at the same IFD: it is read once, as the Exif IFD.
    shared = extra_at(make, make, make)
    sub = struct.pack("<H", 1) + entry(ISO, SHORT, 1, struct.pack("<H", 100)) + b"\0" * 4
    tags = parse(
        tiff(make, entry(0x8769, LONG, 1, shared), entry(0x8825, LONG, 1, shared), extra=sub)
    )
    assert tags.exif == {ISO: (100,)} and tags.gps == {} and tags.entries_read == 4


def test_next_ifd_chains_and_pointers_inside_sub_ifds_are_never_followed():
    # IFD0's next-IFD points at itself (a classic loop), and the Exif IFD holds a pointer
    # back to IFD0: neither is followed, so the parse ends after the two IFDs.
    at = extra_at(entry(MAKE, ASCII, 4, b"Abc\x00"), entry(0x8769, LONG, 1, 0))
    sub = struct.pack("<H", 1) + entry(0x8769, LONG, 1, 8) + struct.pack("<L", at)
    blob = tiff(
        entry(MAKE, ASCII, 4, b"Abc\x00"), entry(0x8769, LONG, 1, at), extra=sub, next_ifd=8
    )
    tags = parse(blob)
    assert tags.ifd0 == {MAKE: "Abc"} and tags.entries_read == 3


def test_an_entry_count_of_65535_is_cut_to_the_entries_the_blob_holds():
    blob = b"II*\x00" + struct.pack("<LH", 8, 0xFFFF) + entry(MAKE, ASCII, 4, b"Abc\x00") * 3
    tags = parse(blob + b"\x00" * 5)
    assert tags.entries_read == 3 and tags.ifd0 == {MAKE: "Abc"}


def test_a_64_kb_blob_of_entries_reads_at_most_the_entry_budget():
    junk = entry(0x9999, LONG, 1, 7)
    blob = b"II*\x00" + struct.pack("<LH", 8, 0xFFFF) + junk * (64 * 1024 // 12)
    assert len(blob) >= 64 * 1024
    assert parse(blob).entries_read == MAX_ENTRIES
    # ...and across IFDs too: three full IFDs share the one budget.
    full = build(
        [(0x9999, LONG, [1])] * 700, [(0x9999, LONG, [1])] * 700, [(0x99, LONG, [1])] * 700
    )
    assert parse(full).entries_read == MAX_ENTRIES


def test_counts_that_would_need_gigabytes_allocate_nothing_and_are_dropped():
    blob = tiff(
        entry(MAKE, ASCII, 0xFFFFFFFF, 26),
        entry(EXPOSURE, RATIONAL, 0x7FFFFFFF, 26),
        entry(MODEL, ASCII, 4, b"Abc\x00"),
        extra=b"\x00" * 64,
    )
    tracemalloc.start()
    try:
        tags = parse(blob)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert tags.ifd0 == {MODEL: "Abc"}
    assert peak < 256 * 1024


def test_values_whose_offset_or_length_runs_past_the_end_are_dropped_and_the_rest_kept():
    blob = tiff(
        entry(MAKE, ASCII, 10, 0xFFFFFFF0),
        entry(SOFTWARE, ASCII, 10, 45),  # 45 + 10 > the blob's 50 bytes
        entry(MODEL, ASCII, 4, b"Abc\x00"),
    )
    assert parse(blob).ifd0 == {MODEL: "Abc"}


@pytest.mark.parametrize(
    "raw",
    [
        entry(MAKE, SHORT, 1, 7),  # text tag stored as a number
        entry(ISO, ASCII, 4, b"100\x00"),  # number tag stored as text
        entry(MAKE, 0, 4, b"Abc\x00"),  # type 0 does not exist
        entry(MAKE, 99, 4, b"Abc\x00"),
        entry(MAKE, ASCII, 0, b"Abc\x00"),  # no items at all
    ],
)
def test_tags_of_a_type_other_than_their_own_are_dropped(raw):
    tags = parse(tiff(raw))
    assert tags.ifd0 == {} and tags.exif == {}


def test_rationals_with_a_zero_denominator_and_non_finite_floats_are_dropped():
    zero = struct.pack("<LL", 18, 0)
    nan = struct.pack("<d", float("nan"))
    ifd0 = [
        entry(0x011A, RATIONAL, 1, 0),
        entry(0x011B, 12, 1, 0),
        entry(MAKE, ASCII, 4, b"Abc\x00"),
    ]
    at = extra_at(*ifd0)
    ifd0[0], ifd0[1] = entry(0x011A, RATIONAL, 1, at), entry(0x011B, 12, 1, at + 8)
    assert parse(tiff(*ifd0, extra=zero + nan)).ifd0 == {MAKE: "Abc"}


@pytest.mark.parametrize(
    ("raw", "text"),
    [
        (b"Caf\xe9 Cam\x00", "Café Cam"),  # Latin-1, as older cameras write
        ("Café Cam".encode(), "Café Cam"),
        (b"Canon\x00junk after the NUL", "Canon"),
        (b"  Nikon\tD850\r\n\x1b[31m ", "Nikon D850 [31m"),  # controls become spaces
        (b"\xe2\x80\x8bZero\xe2\x80\x8ewidth", "Zero width"),  # format characters too
        (b"\x00\x00\x00\x00", None),
        (b"   \x07  ", None),
    ],
)
def test_strings_are_cleaned_of_nuls_controls_and_bad_encodings(raw, text):
    assert exif.clean_text(raw) == text


def test_long_strings_are_cut_to_the_string_cap():
    blob = build([(0x010E, ASCII, "x" * 5000)])
    assert parse(blob).ifd0[0x010E] == "x" * MAX_STRING_CHARS


def test_a_tag_repeated_a_thousand_times_is_decoded_once(monkeypatch):
    decoded = []
    real = exif._value
    monkeypatch.setattr(exif, "_value", lambda *args: decoded.append(args) or real(*args))
    at = extra_at(*[b""] * 1000)
    blob = tiff(*[entry(0x010E, ASCII, 1024, at)] * 1000, extra=b"\x1b" * 1024)
    tags = parse(blob)
    assert tags.entries_read == 1000 and len(decoded) == 1
    assert tags.ifd0 == {}  # the first one decided it: only control characters, so no text


def test_the_first_entry_of_a_tag_decides_it_even_when_it_is_bad():
    blob = tiff(entry(MAKE, SHORT, 1, 7), entry(MAKE, ASCII, 4, b"Abc\x00"))
    assert parse(blob).ifd0 == {}
