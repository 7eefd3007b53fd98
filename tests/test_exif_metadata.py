"""The metadata answer (server/imaging/metadata.py) on the real images in tests/images, and on
real JPEG, PNG, WebP and AVIF files libvips wrote with a phone's EXIF (tests/exif_blobs.py):
groups, GPS as signed decimal degrees, dates as ISO 8601, colour spaces."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import orjson
import pytest
import pyvips
from conftest import IMAGES
from exif_blobs import (
    ASCII,
    BYTE,
    CAMERA_EXIF,
    CAMERA_GPS,
    CAMERA_IFD0,
    EVERYTHING,
    RATIONAL,
    SHORT,
    Entry,
    build,
    dms,
    in_png,
)

from server.imaging.exif import parse
from server.imaging.exifsafe import defuse
from server.imaging.inspect import SourceLimits, probe
from server.imaging.metadata import GROUPS, camera, describe, device, location, temporal

LIMITS = SourceLimits(max_bytes=50_000_000, max_pixels=100_000_000, max_frames=100)
PHONE_EXIF = build(CAMERA_IFD0, CAMERA_EXIF, CAMERA_GPS)
DOC = (Path(__file__).parent.parent / "docs" / "metadata.md").read_text(encoding="utf-8")


def metadata(data: bytes) -> dict[str, Any]:
    answer = describe(data, probe(data, LIMITS))
    assert orjson.loads(orjson.dumps(answer)) == answer  # plain JSON: no bytes, no NaN
    assert tuple(answer["exif"]) == GROUPS
    return answer


def with_exif(blob: bytes, save: str, **options: Any) -> bytes:
    """A real photo (tests/images/photo.jpg, shrunk) saved by libvips carrying `blob`."""
    image = pyvips.Image.thumbnail(str(IMAGES / "photo.jpg"), 160).copy()
    image.set_type(pyvips.GValue.blob_type, "exif-data", blob)
    body: bytes = getattr(image, save)(keep="exif", **options)
    return body


def gps_location(gps: list[Entry]) -> dict[str, Any]:
    return location(parse(build([(0x0112, SHORT, [1])], gps=gps)))


def test_a_photo_without_exif_has_every_group_and_only_the_image_facts():
    data = (IMAGES / "photo.jpg").read_bytes()
    answer = metadata(data)
    assert answer["width"] == 800 and answer["height"] == 600
    assert answer["mime"] == "image/jpeg" and answer["format"] == "jpeg"
    assert answer["bytes"] == len(data) and answer["frames"] == 1
    assert answer["has_alpha"] is False and answer["orientation"] == 1
    assert answer["color_space"] == "srgb"
    groups = answer["exif"]
    assert groups["camera"] == groups["device"] == groups["location"] == groups["temporal"] == {}
    assert groups["file"] == {
        "size_bytes": len(data),
        "format": "jpeg",
        "mime": "image/jpeg",
        "width": 800,
        "height": 600,
        "frames": 1,
    }


def test_a_sideways_stored_photo_answers_its_upright_size_and_orientation_6():
    answer = metadata((IMAGES / "orient6.jpg").read_bytes())
    assert (answer["width"], answer["height"], answer["orientation"]) == (399, 600, 6)
    assert answer["exif"]["basic"] == {
        "width": 399,
        "height": 600,
        "orientation": 6,
        "color_space": "srgb",
        "x_resolution": 72.0,
        "y_resolution": 72.0,
        "resolution_unit": "inch",
    }


@pytest.mark.parametrize(
    ("save", "options", "fmt"),
    [
        ("jpegsave_buffer", {}, "jpeg"),
        ("pngsave_buffer", {}, "png"),
        ("webpsave_buffer", {}, "webp"),
        ("heifsave_buffer", {"compression": "av1", "effort": 0}, "avif"),
    ],
)
def test_a_phones_exif_reads_the_same_from_jpeg_png_webp_and_avif(save, options, fmt):
    answer = metadata(with_exif(PHONE_EXIF, save, **options))
    assert answer["format"] == fmt
    groups = answer["exif"]
    assert groups["camera"] == {
        "make": "Google",
        "model": "Pixel 7",
        "lens_model": "Pixel 7 back camera 6.81mm f/1.85",
        "exposure_time": 0.004,
        "shutter_speed": "1/250",
        "f_number": 1.85,
        "iso": 64,
        "focal_length": 6.81,
        "focal_length_35mm": 24,
        "flash": 16,
        "flash_fired": False,
    }
    assert groups["device"] == {
        "make": "Google",
        "model": "Pixel 7",
        "software": "HDR+ 1.0.540104767zd",
    }
    assert groups["location"] == {"latitude": -33.85875, "longitude": 151.21425, "altitude": 12.34}
    assert groups["temporal"] == {
        "date_time_original": "2024-05-01T14:03:22.120+02:00",
        "create_date": "2024-05-01T14:03:22",
        "modify_date": "2024-05-01T14:03:25+02:00",
        "gps_date_time": "2024-05-01T12:03:22Z",
    }


@pytest.mark.parametrize(
    ("lat_ref", "lon_ref", "expected"),
    [
        ("N", "E", (40.6892472, 74.0445)),
        ("S", "W", (-40.6892472, -74.0445)),
        ("N", "W", (40.6892472, -74.0445)),
        ("s", "w", (-40.6892472, -74.0445)),  # lower case seen in the wild
    ],
)
def test_gps_becomes_signed_decimal_degrees_south_and_west_negative(lat_ref, lon_ref, expected):
    found = gps_location(
        [
            (0x01, ASCII, lat_ref),
            (0x02, RATIONAL, dms(40, 41, 2129)),  # 40°41'21.29"
            (0x03, ASCII, lon_ref),
            (0x04, RATIONAL, dms(74, 2, 4020)),  # 74°2'40.2"
        ]
    )
    assert (found["latitude"], found["longitude"]) == expected


@pytest.mark.parametrize(
    ("ref", "altitude"),
    [([0], 12.5), ([1], -12.5), (None, 12.5), ([7], None), ([3], -12.5)],
)
def test_altitude_is_metres_negative_below_sea_level(ref, altitude):
    gps: list[Entry] = [(0x06, RATIONAL, [(25, 2)])]
    if ref is not None:
        gps.append((0x05, BYTE, ref))
    assert gps_location(gps).get("altitude") == altitude


@pytest.mark.parametrize(
    "gps",
    [
        [(0x02, RATIONAL, dms(40, 41, 2129)), (0x04, RATIONAL, dms(74, 2, 4020))],  # no refs
        [
            (0x01, ASCII, "Q"),
            (0x02, RATIONAL, dms(40, 41, 2129)),
            (0x03, ASCII, "W"),
            (0x04, RATIONAL, dms(74, 2, 4020)),
        ],
        [
            (0x01, ASCII, "N"),
            (0x02, RATIONAL, [(40, 1), (41, 1), (0, 0)]),  # unknown seconds: 0/0
            (0x03, ASCII, "W"),
            (0x04, RATIONAL, dms(74, 2, 4020)),
        ],
        [
            (0x01, ASCII, "N"),
            (0x02, RATIONAL, dms(140, 0, 0)),  # past the pole
            (0x03, ASCII, "W"),
            (0x04, RATIONAL, dms(74, 2, 4020)),
        ],
    ],
)
def test_a_position_with_a_missing_or_junk_part_is_left_out_whole(gps):
    found = gps_location(gps)
    assert "latitude" not in found and "longitude" not in found


def test_image_direction_is_degrees_with_its_reference():
    found = gps_location([(0x10, ASCII, "M"), (0x11, RATIONAL, [(2705, 10)])])
    assert found == {"direction": 270.5, "direction_ref": "magnetic"}
    assert gps_location([(0x11, RATIONAL, [(400, 1)])]) == {}


@pytest.mark.parametrize(
    ("date", "subsec", "offset", "expected"),
    [
        ("2021:12:31 23:59:59", None, None, "2021-12-31T23:59:59"),
        ("2021:12:31 23:59:59", "5", "-05:00", "2021-12-31T23:59:59.5-05:00"),
        ("2021-12-31 23:59:59", None, None, "2021-12-31T23:59:59"),  # dashes, as some apps
        ("2021:12:31 23:59:59", "12a", "+99:00", "2021-12-31T23:59:59"),  # junk dropped
        ("0000:00:00 00:00:00", None, None, None),  # EXIF's "unknown"
        ("2021:13:45 25:00:00", None, None, None),
        ("yesterday", None, None, None),
        ("    :  :     :  :  ", None, None, None),
    ],
)
def test_dates_are_iso_8601_with_their_offset_and_non_dates_are_left_out(
    date, subsec, offset, expected
):
    entries: list[Entry] = [(0x9003, ASCII, date)]
    entries += [(0x9291, ASCII, subsec)] if subsec else []
    entries += [(0x9011, ASCII, offset)] if offset else []
    found = temporal(parse(build([(0x0112, SHORT, [1])], exif=entries)))
    assert found.get("date_time_original") == expected


@pytest.mark.parametrize(
    ("name", "space"),
    [("photo.jpg", "srgb"), ("p3.jpg", "display-p3"), ("cmyk.jpg", "cmyk"), ("alpha.png", "srgb")],
)
def test_the_colour_space_comes_from_libvips_and_the_icc_profile(name, space):
    assert metadata((IMAGES / name).read_bytes())["color_space"] == space


def test_a_cmyk_photo_with_its_profile_names_it():
    image = pyvips.Image.thumbnail(str(IMAGES / "photo.jpg"), 64)
    data = image.icc_export(output_profile="cmyk").jpegsave_buffer(keep="icc")
    answer = metadata(data)
    assert answer["color_space"] == "cmyk"
    assert answer["exif"]["basic"]["icc_profile"] == "Chemical proof"


def test_alpha_and_frames_come_from_the_source():
    assert metadata((IMAGES / "alpha.png").read_bytes())["has_alpha"] is True
    assert metadata((IMAGES / "anim.gif").read_bytes())["frames"] == 6


def test_hostile_exif_in_a_real_png_gives_partial_metadata():
    # IFD0 says 65535 entries and points its Exif IFD at itself 40 times; Make survives.
    blob = b"II*\x00" + bytes.fromhex("08000000 ffff")
    blob += bytes.fromhex("0f01 0200 04000000") + b"Abc\x00"
    blob += bytes.fromhex("6987 0400 01000000 08000000") * 40
    data = in_png((IMAGES / "alpha.png").read_bytes(), blob)
    answer = describe(data, probe(defuse(data), LIMITS))
    assert answer["exif"]["camera"] == {"make": "Abc"} and answer["has_alpha"] is True


def p3_phone_photo() -> bytes:
    """docs/metadata.md's second example: p3.jpg with every tag we read, saved by libvips."""
    image = pyvips.Image.new_from_file(str(IMAGES / "p3.jpg")).copy()
    image.set_type(pyvips.GValue.blob_type, "exif-data", build(*EVERYTHING))
    body: bytes = image.jpegsave_buffer(keep="all", Q=85)
    return body


def documented_keys(heading: str) -> set[str]:
    """The backquoted names in the first column of the table after `heading`."""
    table = DOC[DOC.index(heading) :].split("\n\n")[1]
    rows = [row.split("|")[1] for row in table.splitlines()[2:]]
    return {name for row in rows for name in re.findall(r"`([a-z_0-9]+)`", row)}


def test_the_docs_examples_are_what_describe_answers():
    blocks = re.findall(r"```json\n(.*?)```", DOC, flags=re.DOTALL)
    assert json.loads(blocks[0]) == metadata((IMAGES / "orient6.jpg").read_bytes())
    answer, data = json.loads(blocks[1]), p3_phone_photo()
    # The JPEG's size follows libvips' encoder version; everything else must match exactly.
    answer["bytes"] = answer["exif"]["file"]["size_bytes"] = len(data)
    assert answer == metadata(data)


def test_the_docs_list_every_key_the_answer_can_have_and_no_other():
    answer = metadata(p3_phone_photo())
    assert documented_keys("## The answer") == set(answer)
    tags = parse(build(*EVERYTHING))
    made = {"camera": camera(tags), "device": device(tags)}
    made |= {"location": location(tags), "temporal": temporal(tags)}
    made |= {"basic": answer["exif"]["basic"], "file": answer["exif"]["file"]}
    for group in GROUPS:
        assert documented_keys(f"**`{group}`**") == set(made[group]), group
