"""Seed 002's `ImageTransform` object <-> SPEC §2's delivery URL params. Pure: no I/O.

`TRANSFORM` validates the object (errors name `transform.width`, and /v1/openapi.json is
generated from it); `to_params` writes the URL params the delivery path parses, so a
transform means exactly what its URL does; `from_params` reads a template's params back as
a transform for listing, keeping params that have no transform name under their URL names.
The values' own rules (a side within IMGCDN_MAX_OUTPUT_SIDE, a crop's grammar) are the URL
parser's: `transform_param` names its errors as the transform field they came from.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from server.errors import InvalidParam
from server.names import TEMPLATE_NAME
from server.ops import QUALITY, SIDE
from server.schema import Choice, Custom, Field, Int, Number, Obj, Text
from server.spec import FITS, FORMATS, GRAVITIES
from server.templates import NUMERIC

# transform field -> URL param (SPEC §2). `template` is the /t/{template}/ path segment.
URL_NAMES: dict[str, str] = {
    "width": "w",
    "height": "h",
    "fit": "fit",
    "format": "fmt",
    "quality": "q",
    "crop": "crop",
    "gravity": "g",
    "dpr": "dpr",
    "blur": "blur",
    "sharpen": "sharpen",
    "blur_faces": "blur_faces",
    "rotate": "rot",
    "flip": "flip",
    "background": "bg",
}
FIELD_NAMES = {url: name for name, url in URL_NAMES.items()}
MAX_CROP = 999_999  # the URL grammar's bound on each crop number
_COMPASS = {"north": "n", "south": "s", "east": "e", "west": "w", "centre": "center"}
_COMPASS |= {"northeast": "ne", "northwest": "nw", "southeast": "se", "southwest": "sw"}

CROP_BOX = Obj(
    {
        "x": Int(0, MAX_CROP, "left edge, source pixels of the upright image"),
        "y": Int(0, MAX_CROP, "top edge"),
        "width": Int(1, MAX_CROP, "box width"),
        "height": Int(1, MAX_CROP, "box height"),
    },
    frozenset({"x", "y", "width", "height"}),
    title="CropBox",
)


def _crop(value: object, path: str, text: bool) -> str:
    """A box object, or the URL's "X,Y,W,H" (its grammar is checked by the URL parser)."""
    if isinstance(value, str):
        return value
    if isinstance(value, dict):
        box = CROP_BOX.check(value, path, text)
        return f"{box['x']},{box['y']},{box['width']},{box['height']}"
    raise InvalidParam(path, f'{path} must be {{"x","y","width","height"}} or "X,Y,W,H"')


def _gravity(value: object, path: str, text: bool) -> str:
    if not isinstance(value, str) or not value:
        raise InvalidParam(path, f"{path} must be a string: {', '.join(GRAVITIES)} or fp:X,Y")
    return _COMPASS.get(value, value)  # the URL parser judges the rest, fp:X,Y included


def _hex(value: object, path: str, text: bool) -> str:
    raw = value.removeprefix("#").lower() if isinstance(value, str) else ""
    if len(raw) not in (6, 8) or any(c not in "0123456789abcdef" for c in raw):
        raise InvalidParam(path, f"{path} must be a hex colour RRGGBB or RRGGBBAA, got {value!r}")
    return raw


FIELDS: dict[str, Field] = {
    "width": Int(1, SIDE, "target width in CSS pixels", cap="output_side"),
    "height": Int(1, SIDE, "target height in CSS pixels", cap="output_side"),
    "fit": Choice(FITS, "how the image fits the box (default cover with both sides, else inside)"),
    "format": Choice(("auto", *FORMATS), "output format; auto follows Accept", {"jpg": "jpeg"}),
    "quality": QUALITY,
    "crop": Custom(
        _crop,
        {"oneOf": [CROP_BOX.schema(), {"type": "string", "pattern": "^[0-9]+(,[0-9]+){3}$"}]},
        "a box cut before sizing: {x, y, width, height} or 'X,Y,W,H'",
    ),
    "gravity": Custom(
        _gravity,
        {"type": "string", "examples": [*GRAVITIES, "fp:0.5,0.3"]},
        "what cover keeps: center n s e w ne nw se sw (or north...), smart, entropy, face, fp:X,Y",
    ),
    "dpr": Number(1, 4, "device pixel ratio, up to 2 decimals"),
    "blur": Number(0.3, 100, "Gaussian blur sigma"),
    "sharpen": Number(0.3, 10, "sharpen sigma"),
    "blur_faces": Number(0.3, 100, "blur every detected face; at least 1/6 of the face's side"),
    "rotate": Number(-360, 360, "clockwise degrees, up to 2 decimals"),
    "flip": Choice(("h", "v", "hv"), "mirror", {"horizontal": "h", "vertical": "v", "both": "hv"}),
    "background": Custom(
        _hex,
        {"type": "string", "pattern": "^#?[0-9A-Fa-f]{6}([0-9A-Fa-f]{2})?$"},
        "padding, rotation fill and flattening colour, RRGGBB or RRGGBBAA",
    ),
    "template": Text(64, "a template (transformation) to start from", f"_|{TEMPLATE_NAME}"),
}
TRANSFORM = Obj(FIELDS, description="delivery transform (SPEC §2 params)", title="ImageTransform")


def to_params(transform: Mapping[str, Any]) -> tuple[str, dict[str, str]]:
    """A checked transform (TRANSFORM.check's output) -> (template name, URL params)."""
    params: dict[str, str] = {}
    for name, value in transform.items():
        if name == "template":
            continue
        if name == "quality":
            value = max(value, 1)  # the seed's "0 to 100"; libvips' lowest is 1
        params[URL_NAMES[name]] = _text(value)
    return str(transform.get("template", "_")), params


def transform_param(url_param: str | None) -> str | None:
    """The transform field an error about URL param `url_param` is about, if any."""
    if url_param == "template":
        return "transform.template"
    name = FIELD_NAMES.get(url_param or "")
    return f"transform.{name}" if name else None


def from_params(params: Mapping[str, Any]) -> dict[str, Any]:
    """A template's params (as stored: strings, numbers, a `wm` object) as a transform."""
    out: dict[str, Any] = {}
    for url_name, raw in params.items():
        name = FIELD_NAMES.get(url_name, url_name)
        if url_name == "crop" and isinstance(raw, str) and raw.count(",") == 3:
            x, y, w, h = (_number(v) for v in raw.split(","))
            out[name] = {"x": x, "y": y, "width": w, "height": h}
        elif url_name in NUMERIC:
            out[name] = _number(raw)
        else:
            out[name] = raw
    return out


def _text(value: object) -> str:
    if isinstance(value, float):
        # Plain decimals as the URL grammar writes them: repr's 1e-05 would be refused as
        # "not a decimal", where "0.00001" gets the message that is true (too many decimals).
        text = format(Decimal(repr(value)), "f")
        return text.rstrip("0").rstrip(".") if "." in text else text
    return str(value)


def _number(raw: object) -> object:
    if isinstance(raw, bool) or not isinstance(raw, int | float | str):
        return raw
    if isinstance(raw, str):
        try:
            number = float(raw)
        except ValueError:
            return raw
        return int(number) if number.is_integer() and "." not in raw else number
    return raw
