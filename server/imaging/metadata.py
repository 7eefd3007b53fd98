"""The metadata answer of SPEC §6 (POST /v1/image/metadata): what an image is, and its EXIF
in the six groups of seed 000, named and explained in docs/metadata.md.

Reads only the header (no pixel is decoded). Every group is always present, possibly empty,
so a client's `r.exif.camera.make` never throws; a value that is missing, malformed or out
of range is left out rather than guessed.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

from server.imaging import exif
from server.imaging.colour import color_space, icc_description
from server.imaging.exif import Tags, Value
from server.imaging.exifsafe import blocks, defuse
from server.imaging.inspect import SourceInfo, header

GROUPS = ("basic", "camera", "device", "location", "temporal", "file")

_EXPOSURE_PROGRAMS = {
    1: "manual",
    2: "program",
    3: "aperture_priority",
    4: "shutter_priority",
    5: "creative",
    6: "action",
    7: "portrait",
    8: "landscape",
}
_METERING_MODES = {
    1: "average",
    2: "center_weighted",
    3: "spot",
    4: "multi_spot",
    5: "pattern",
    6: "partial",
}
_WHITE_BALANCE = {0: "auto", 1: "manual"}
_RESOLUTION_UNITS = {2: "inch", 3: "cm"}
_DATE = re.compile(r"(\d{4})[:-](\d\d)[:-](\d\d)[ T](\d\d):(\d\d):(\d\d)")
_OFFSET = re.compile(r"[+-](\d\d):(\d\d)")


def describe(data: bytes, info: SourceInfo) -> dict[str, Any]:
    """SPEC §6's metadata answer for `data`, already probed as `info`. Safe on raw bytes:
    their EXIF is read here, and libvips only sees them defused (exifsafe.py)."""
    image = header(defuse(data), info.kind)
    fields = set(image.get_fields())
    # Our parser reads the container's own EXIF, so a block cut for libexif's sake still
    # answers what can be read of it; libvips' copy serves the containers we do not walk.
    found = blocks(data)
    if found:
        tags = exif.parse(found[0][2])
    else:
        tags = exif.parse(image.get("exif-data")) if "exif-data" in fields else Tags()
    icc = icc_description(image.get("icc-profile-data")) if "icc-profile-data" in fields else None
    fmt = info.mime.removeprefix("image/")
    space = color_space(image, icc)
    basic = {
        "width": info.width,
        "height": info.height,
        "orientation": info.orientation,
        "color_space": space,
        "icc_profile": icc,
        "x_resolution": _number(tags.ifd0.get(0x011A)),
        "y_resolution": _number(tags.ifd0.get(0x011B)),
        "resolution_unit": _named(tags.ifd0.get(0x0128), _RESOLUTION_UNITS),
        "description": _text(tags.ifd0.get(0x010E)),
        "artist": _text(tags.ifd0.get(0x013B)),
        "copyright": _text(tags.ifd0.get(0x8298)),
    }
    file = {
        "size_bytes": len(data),
        "format": fmt,
        "mime": info.mime,
        "width": info.width,
        "height": info.height,
        "frames": info.frames,
    }
    groups = {
        "basic": basic,
        "camera": camera(tags),
        "device": device(tags),
        "location": location(tags),
        "temporal": temporal(tags),
        "file": file,
    }
    return {
        "width": info.width,
        "height": info.height,
        "mime": info.mime,
        "format": fmt,
        "bytes": len(data),
        "frames": info.frames,
        "has_alpha": bool(info.alpha),
        "orientation": info.orientation,
        "color_space": space,
        "exif": {name: _present(group) for name, group in groups.items()},
    }


def camera(tags: Tags) -> dict[str, Any]:
    ifd0, ex = tags.ifd0, tags.exif
    exposure = _positive(ex.get(0x829A))
    if exposure is not None and not 1e-7 <= exposure <= 1e5:  # keeps "1/N" a short string
        exposure = None
    flash = _number(ex.get(0x9209))
    return _present(
        {
            "make": _text(ifd0.get(0x010F)),
            "model": _text(ifd0.get(0x0110)),
            "lens_make": _text(ex.get(0xA433)),
            "lens_model": _text(ex.get(0xA434)),
            "exposure_time": None if exposure is None else round(exposure, 9),
            "shutter_speed": None if exposure is None else _shutter(exposure),
            "f_number": _rounded(_positive(ex.get(0x829D)), 2),
            "iso": _integer(_positive(ex.get(0x8827))),
            "focal_length": _rounded(_positive(ex.get(0x920A)), 2),
            "focal_length_35mm": _integer(_positive(ex.get(0xA405))),
            "exposure_bias": _rounded(_number(ex.get(0x9204)), 2),
            "exposure_program": _named(ex.get(0x8822), _EXPOSURE_PROGRAMS),
            "metering_mode": _named(ex.get(0x9207), _METERING_MODES),
            "white_balance": _named(ex.get(0xA403), _WHITE_BALANCE),
            "flash": _integer(flash),
            "flash_fired": None if flash is None else bool(int(flash) & 1),
        }
    )


def device(tags: Tags) -> dict[str, Any]:
    # make/model are here too: readers of seed 000 look for the device's name in `device`.
    ifd0 = tags.ifd0
    return _present(
        {
            "make": _text(ifd0.get(0x010F)),
            "model": _text(ifd0.get(0x0110)),
            "software": _text(ifd0.get(0x0131)),
            "host_computer": _text(ifd0.get(0x013C)),
        }
    )


def location(tags: Tags) -> dict[str, Any]:
    gps = tags.gps
    latitude = _coordinate(gps.get(0x02), gps.get(0x01), "N", "S", 90.0)
    longitude = _coordinate(gps.get(0x04), gps.get(0x03), "E", "W", 180.0)
    if latitude is None or longitude is None:  # half a position places the photo nowhere
        latitude = longitude = None
    altitude = _number(gps.get(0x06))
    # Absent: above sea level (the EXIF default). 2 and 3 are EXIF 3.0's ellipsoidal heights.
    ref = _integer(_number(gps.get(0x05))) if 0x05 in gps else 0
    if altitude is not None and ref in (0, 1, 2, 3):
        altitude = round(-abs(altitude) if ref in (1, 3) else altitude, 2)
    else:
        altitude = None
    direction = _number(gps.get(0x11))
    if direction is not None and not 0 <= direction <= 360:
        direction = None
    direction_ref = {"T": "true", "M": "magnetic"}.get(_text(gps.get(0x10)) or "")
    return _present(
        {
            "latitude": latitude,
            "longitude": longitude,
            "altitude": altitude,
            "direction": _rounded(direction, 2),
            "direction_ref": direction_ref if direction is not None else None,
        }
    )


def temporal(tags: Tags) -> dict[str, Any]:
    ifd0, ex, gps = tags.ifd0, tags.exif, tags.gps
    return _present(
        {
            "date_time_original": _when(ex.get(0x9003), ex.get(0x9291), ex.get(0x9011)),
            "create_date": _when(ex.get(0x9004), ex.get(0x9292), ex.get(0x9012)),
            "modify_date": _when(ifd0.get(0x0132), ex.get(0x9290), ex.get(0x9010)),
            "gps_date_time": _gps_when(gps.get(0x1D), gps.get(0x07)),
        }
    )


def _when(date: Value | None, subsec: Value | None, offset: Value | None) -> str | None:
    """An EXIF date ("2024:05:01 14:03:22") with its sub-seconds and offset, as ISO 8601;
    None for a date that is not one (including the "0000:00:00 00:00:00" of 'unknown')."""
    match = _DATE.match(_text(date) or "")
    if match is None:
        return None
    y, mo, d, h, mi, s = match.groups()
    try:
        datetime(int(y), int(mo), int(d), int(h), int(mi), int(s))
    except ValueError:
        return None
    text = f"{y}-{mo}-{d}T{h}:{mi}:{s}"
    digits = _text(subsec) or ""
    if digits.isdigit() and digits.isascii():
        text += "." + digits[:9]
    zone = _text(offset) or ""
    found = _OFFSET.fullmatch(zone)
    if found and int(found[1]) <= 14 and int(found[2]) < 60:
        text += zone
    return text


def _gps_when(date: Value | None, time: Value | None) -> str | None:
    """GPSDateStamp + GPSTimeStamp (hours, minutes, seconds in UTC) as ISO 8601 with Z."""
    match = re.fullmatch(r"(\d{4}):(\d\d):(\d\d)", _text(date) or "")
    if match is None or not isinstance(time, tuple) or len(time) != 3:
        return None
    if not (0 <= time[0] < 24 and 0 <= time[1] < 60 and 0 <= time[2] < 61):
        return None
    try:
        year, month, day = (int(part) for part in match.groups())
        when = datetime(year, month, day, tzinfo=UTC)
    except ValueError:
        return None
    when += timedelta(hours=int(time[0]), minutes=int(time[1]), seconds=int(time[2]))
    return when.strftime("%Y-%m-%dT%H:%M:%SZ")


def _coordinate(
    value: Value | None, ref: Value | None, plus: str, minus: str, limit: float
) -> float | None:
    """Degrees, minutes, seconds (or fewer parts) and a hemisphere as signed decimal degrees.
    A missing or junk hemisphere gives None: the wrong sign is worse than no position."""
    side = (_text(ref) or "").upper()
    if not isinstance(value, tuple) or side not in (plus, minus) or not 1 <= len(value) <= 3:
        return None
    if any(part < 0 for part in value):
        return None
    degrees = sum(part / 60.0**i for i, part in enumerate(value))
    if degrees > limit:
        return None
    return round(-degrees if side == minus else degrees, 7)


def _shutter(seconds: float) -> str:
    # How cameras print it: "1/250" below a quarter second, else "0.5", "2", "30".
    if seconds < 0.25001:
        return f"1/{round(1 / seconds)}"
    return f"{round(seconds, 1):g}"


def _text(value: Value | None) -> str | None:
    return value if isinstance(value, str) else None


def _number(value: Value | None) -> float | None:
    return float(value[0]) if isinstance(value, tuple) else None


def _positive(value: Value | None) -> float | None:
    number = _number(value)
    return number if number is not None and number > 0 else None


def _integer(number: float | None) -> int | None:
    return None if number is None or number != int(number) else int(number)


def _rounded(number: float | None, places: int) -> float | None:
    return None if number is None else round(number, places)


def _named(value: Value | None, names: dict[int, str]) -> str | None:
    number = _integer(_number(value))
    return None if number is None else names.get(number)


def _present(group: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in group.items() if value is not None}
