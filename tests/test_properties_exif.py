"""Properties of the EXIF parser and the metadata groups built on it, searched by hypothesis:
random bytes, a real phone blob mutated (bytes overwritten, cut, spliced), and IFDs of random
entries (any tag, type, count and offset). Whatever the bytes, parsing never raises, reads
at most MAX_ENTRIES entries, and every answer is clean, finite JSON."""

from __future__ import annotations

import math
import struct
import unicodedata
from typing import Any

import orjson
from conftest import IMAGES
from exif_blobs import CAMERA_EXIF, CAMERA_GPS, CAMERA_IFD0, build, in_heif, in_jpeg, in_png
from hypothesis import given
from hypothesis import strategies as st

from server.imaging.colour import icc_description
from server.imaging.exif import MAX_ENTRIES, MAX_STRING_CHARS, WANTED, Tags, parse
from server.imaging.exifsafe import blocks, defuse, hostile
from server.imaging.metadata import camera, device, location, temporal

PHONE = build(CAMERA_IFD0, CAMERA_EXIF, CAMERA_GPS)
JPEG = (IMAGES / "photo.jpg").read_bytes()[:2000]  # the structure, not the scan
PNG = (IMAGES / "alpha.png").read_bytes()
HEIC = (IMAGES / "orient6.heic").read_bytes()
PHONE_BE = build(CAMERA_IFD0, CAMERA_EXIF, CAMERA_GPS, order=">", prefix=b"")
HEADERS = st.sampled_from(
    [b"", b"Exif\x00\x00", b"II*\x00\x08\x00\x00\x00", b"MM\x00*\x00\x00\x00\x08"]
)
TAGS = st.sampled_from(sorted({tag for tags in WANTED.values() for tag in tags} | {0x8769, 0x8825}))
COUNTS = st.sampled_from([0, 1, 2, 3, 4, 5, 8, 255, 0xFFFF, 0x7FFFFFFF, 0xFFFFFFFF]) | st.integers(
    0, 2**32 - 1
)


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    blob = bytearray(draw(st.sampled_from([PHONE, PHONE_BE])))
    for _ in range(draw(st.integers(1, 12))):
        at = draw(st.integers(0, len(blob) - 1))
        blob[at] = draw(st.sampled_from([0x00, 0xFF, 0x08, 0x69, 0x87]) | st.integers(0, 255))
    if draw(st.booleans()):
        cut = draw(st.integers(0, len(blob)))
        blob[cut:] = draw(st.binary(max_size=64))
    return bytes(blob)


@st.composite
def random_ifds(draw: st.DrawFn) -> bytes:
    """IFD0 of random entries whose offsets mostly land inside the blob, and sometimes not."""
    order = draw(st.sampled_from(["<", ">"]))
    n = draw(st.integers(0, 40))
    declared = draw(st.sampled_from([n, n, 0xFFFF]) | st.integers(0, 0xFFFF))
    size = 8 + 2 + 12 * n + 4 + 256
    table = b""
    for _ in range(n):
        field = draw(st.integers(0, size + 16) | st.sampled_from([0, 8, 0xFFFFFFFF]))
        tag, kind, count = draw(TAGS), draw(st.integers(0, 14)), draw(COUNTS)
        table += struct.pack(order + "HHLL", tag, kind, count, field)
    magic = b"II*\x00" if order == "<" else b"MM\x00*"
    head = magic + struct.pack(order + "LH", 8, declared)
    return (
        head
        + table
        + struct.pack(order + "L", draw(st.integers(0, size)))
        + draw(st.binary(min_size=256, max_size=256))
    )


BLOBS = st.one_of(
    st.builds(lambda head, tail: head + tail, HEADERS, st.binary(max_size=2048)),
    mutated(),
    random_ifds(),
)


def assert_clean(value: Any) -> None:
    if isinstance(value, dict):
        for item in value.values():
            assert_clean(item)
    elif isinstance(value, str):
        assert 0 < len(value) <= MAX_STRING_CHARS
        assert not any(unicodedata.category(c)[0] == "C" for c in value)
    elif isinstance(value, float):
        assert math.isfinite(value)


def assert_tags_clean(tags: Tags) -> None:
    assert tags.entries_read <= MAX_ENTRIES
    for ifd in (tags.ifd0, tags.exif, tags.gps):
        for value in ifd.values():
            if isinstance(value, str):
                assert_clean(value)
            else:
                assert value and all(math.isfinite(x) for x in value)


@given(BLOBS)
def test_any_blob_parses_to_clean_tags_within_the_entry_budget(blob):
    assert_tags_clean(parse(blob))


@given(BLOBS)
def test_any_blob_gives_groups_of_clean_json(blob):
    tags = parse(blob)
    groups = {"camera": camera(tags), "device": device(tags)}
    groups |= {"location": location(tags), "temporal": temporal(tags)}
    assert_clean(groups)
    assert orjson.loads(orjson.dumps(groups)) == groups
    where = groups["location"]
    assert -90 <= where.get("latitude", 0) <= 90 and -180 <= where.get("longitude", 0) <= 180


@st.composite
def icc_profiles(draw: st.DrawFn) -> bytes:
    """A 128-byte header, a tag table naming 'desc' at random places, and tag bodies that
    start as v2 'desc' or v4 'mluc' text with random lengths and offsets."""
    n = draw(st.integers(0, 6))
    count = draw(st.sampled_from([n, 0xFFFFFFFF]) | st.integers(0, 100))
    table = b""
    for _ in range(n):
        at = draw(st.just(132 + 12 * n) | st.integers(0, 400))  # mostly: at the body
        size = draw(COUNTS)
        table += draw(st.sampled_from([b"desc", b"cprt"])) + struct.pack(">LL", at, size)
    small = st.integers(0, 64) | COUNTS
    body = draw(st.sampled_from([b"desc", b"mluc", b"XYZ "])) + bytes(4)
    body += struct.pack(">L", draw(small))  # v2: the text's length; v4: the record count
    if body.startswith(b"mluc"):  # record size, language, then the first record's length, offset
        body += struct.pack(">L4sLL", 12, b"enUS", draw(small), draw(st.integers(0, 40) | COUNTS))
    body += draw(st.binary(max_size=300))
    return bytes(128) + struct.pack(">L", count) + table + body


@given(icc_profiles() | st.binary(max_size=1024))
def test_any_icc_profile_gives_a_clean_description_or_none(profile):
    found = icc_description(profile)
    assert found is None or (0 < len(found) <= MAX_STRING_CHARS)


def container(kind: str, blob: bytes) -> bytes:
    if kind == "jpeg":
        return in_jpeg(JPEG, blob)
    if kind == "heic":
        return in_heif(HEIC, blob)
    return in_png(PNG, blob)


@given(st.sampled_from(["jpeg", "png", "heic"]), BLOBS, st.integers(0, 400), st.binary(max_size=8))
def test_defuse_never_raises_never_grows_and_leaves_nothing_hostile(kind, blob, cut, junk):
    data = container(kind, blob)
    data = data[:cut] + junk + data[cut + len(junk) :]  # a container damaged here and there
    safe = defuse(data)
    assert len(safe) <= len(data)
    assert not any(hostile(found) for _, _, found in blocks(safe))
    assert defuse(safe) == safe
