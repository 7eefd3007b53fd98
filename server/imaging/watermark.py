"""Watermarks: an image (an asset) or a line of text, composited onto the sized output.

Templates hold a watermark; URLs cannot set one. `parse` validates the template's JSON,
`apply` draws it (a pipeline step, so every frame of an animation gets it).
"""

from __future__ import annotations

import html
import math
import unicodedata
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import pyvips

from server.errors import ImgcdnError, InvalidId, InvalidParam
from server.imaging.inspect import thumbnail
from server.names import validate_id

POSITIONS = ("center", "n", "s", "e", "w", "ne", "nw", "se", "sw", "tile")
FIELDS = ("asset", "text", "position", "opacity", "scale", "margin", "color")
MAX_TEXT = 200
MAX_MARGIN = 1000
FONT = "sans bold"
# Built marks are kept (in memory) so an animation decodes or typesets its mark once, not
# once per frame; only small ones, so the cache stays within a few tens of MB.
_CACHE_PIXELS = 1 << 20


@dataclass(frozen=True, slots=True)
class Watermark:
    asset: str | None = None  # an asset id: its image is the mark
    text: str | None = None  # or a line of text
    position: str = "se"
    opacity: float = 0.5  # 0..1
    scale: float = 0.25  # the mark's width as a fraction of the output's width
    margin: int = 16  # output pixels from the edges (and between tiles)
    color: tuple[int, int, int] = (255, 255, 255)  # text colour


def parse(raw: Any) -> Watermark:
    """A template's `wm` object -> Watermark, or InvalidParam naming `wm.<field>`."""
    if isinstance(raw, str):
        return Watermark(asset=_asset(raw))
    if not isinstance(raw, dict):
        raise InvalidParam("wm", "wm must be an asset id or an object with asset or text")
    for key in raw:
        if key not in FIELDS:
            raise InvalidParam(f"wm.{key}", f"unknown watermark field; known: {', '.join(FIELDS)}")
    if ("asset" in raw) == ("text" in raw):
        raise InvalidParam("wm", "wm needs exactly one of asset or text")
    if "color" in raw and "text" not in raw:
        raise InvalidParam("wm.color", "wm.color applies to text watermarks only")
    position = raw.get("position", "se")
    if position not in POSITIONS:
        raise InvalidParam("wm.position", f"wm.position must be one of {', '.join(POSITIONS)}")
    margin = raw.get("margin", 16)
    if isinstance(margin, bool) or not isinstance(margin, int) or not 0 <= margin <= MAX_MARGIN:
        raise InvalidParam("wm.margin", f"wm.margin must be an integer in 0..{MAX_MARGIN}")
    return Watermark(
        asset=_asset(raw["asset"]) if "asset" in raw else None,
        text=_text(raw["text"]) if "text" in raw else None,
        position=position,
        opacity=_number(raw, "opacity", 0.5, 0.0),
        scale=_number(raw, "scale", 0.25, 0.01),
        margin=margin,
        color=_color(raw.get("color", "ffffff")),
    )


def _asset(value: Any) -> str:
    if not isinstance(value, str):
        raise InvalidParam("wm.asset", "wm.asset must be an asset id (a string)")
    try:
        return validate_id(value)
    except InvalidId as exc:
        raise InvalidParam("wm.asset", f"wm.asset: {exc.message}") from exc


def _text(value: Any) -> str:
    if not isinstance(value, str) or not 1 <= len(value) <= MAX_TEXT:
        raise InvalidParam("wm.text", f"wm.text must be a string of 1..{MAX_TEXT} characters")
    categories = [unicodedata.category(c) for c in value]
    if "Cc" in categories:
        raise InvalidParam("wm.text", "wm.text must not contain control characters")
    if not any(cat[0] in "LNPS" for cat in categories):  # spaces alone draw nothing
        raise InvalidParam("wm.text", "wm.text must contain a visible character")
    return value


def _number(raw: dict[str, Any], field: str, default: float, low: float) -> float:
    value = raw.get(field, default)
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not math.isfinite(value)
        or not low <= value <= 1
    ):
        raise InvalidParam(f"wm.{field}", f"wm.{field} must be a number in {low:g}..1")
    return float(value)


def _color(value: Any) -> tuple[int, int, int]:
    ok = isinstance(value, str) and len(value) == 6
    try:
        rgb = bytes.fromhex(value) if ok else b""
    except ValueError:
        rgb = b""
    if len(rgb) != 3:
        raise InvalidParam("wm.color", "wm.color must be six hex digits, RRGGBB")
    return rgb[0], rgb[1], rgb[2]


def apply(image: pyvips.Image, mark: Watermark, mark_source: bytes | None) -> pyvips.Image:
    """Composite `mark` onto `image` (already at its output size). `mark_source` holds the
    watermark asset's bytes when `mark.asset` is set."""
    if mark.opacity <= 0:
        return image
    if mark.asset is not None and mark_source is None:
        raise ImgcdnError("watermark asset bytes were not loaded")
    grey = image.bands <= 2
    width = max(1, round(mark.scale * image.width))
    source = mark_source if mark.asset is not None else None
    if width * image.height <= _CACHE_PIXELS:
        stamp = _cached_mark(mark, source, width, image.height, grey)
    else:
        stamp = _mark(mark, source, width, image.height, grey)
    if stamp.width > image.width or stamp.height > image.height:  # a resize's rounding
        stamp = stamp.crop(0, 0, min(stamp.width, image.width), min(stamp.height, image.height))
    if mark.position == "tile":
        return _over(image, _tiles(stamp, mark.margin, image.width, image.height))
    # Blend only the mark's rectangle and set it back in: composite2(x=, y=) would run
    # every pixel of the image through the blend (about 2x the cost of a JPEG encode).
    x, y = _offset(mark, (image.width, image.height), (stamp.width, stamp.height))
    patch = _over(image.crop(x, y, stamp.width, stamp.height), stamp)
    return image.insert(patch, x, y)


def _over(image: pyvips.Image, mark: pyvips.Image) -> pyvips.Image:
    """`mark` over `image` (same size), in the image's bands and format."""
    out = image.composite2(mark, "over")
    if image.bands in (1, 3):
        out = out.extract_band(0, n=image.bands)  # composite adds alpha; ours is opaque
    return out if out.format == "uchar" else out.cast("uchar")


def _tiles(stamp: pyvips.Image, margin: int, width: int, height: int) -> pyvips.Image:
    """The mark repeated `margin` apart, one copy centred, cut to the image's size."""
    cell_w, cell_h = stamp.width + margin, stamp.height + margin
    cell = stamp.embed(0, 0, cell_w, cell_h)  # the padding is black at alpha 0: transparent
    x0 = (width - stamp.width) // 2 % cell_w
    y0 = (height - stamp.height) // 2 % cell_h
    across, down = width // cell_w + 2, height // cell_h + 2
    return cell.replicate(across, down).crop(
        (cell_w - x0) % cell_w, (cell_h - y0) % cell_h, width, height
    )


def _offset(mark: Watermark, size: tuple[int, int], box: tuple[int, int]) -> tuple[int, int]:
    """Top-left corner of the mark: `margin` in from the named edges, centred on the others."""
    (width, height), (w, h) = size, box
    x, y = (width - w) // 2, (height - h) // 2
    # A margin wider than the room left brings the mark to the centre, never past it.
    margin_x, margin_y = min(mark.margin, x), min(mark.margin, y)
    if mark.position in ("w", "nw", "sw"):
        x = margin_x
    elif mark.position in ("e", "ne", "se"):
        x = width - w - margin_x
    if mark.position in ("n", "nw", "ne"):
        y = margin_y
    elif mark.position in ("s", "sw", "se"):
        y = height - h - margin_y
    return x, y


@lru_cache(maxsize=16)
def _cached_mark(
    mark: Watermark, source: bytes | None, width: int, max_height: int, grey: bool
) -> pyvips.Image:
    return _mark(mark, source, width, max_height, grey).copy_memory()


def _mark(
    mark: Watermark, source: bytes | None, width: int, max_height: int, grey: bool
) -> pyvips.Image:
    """The mark `width` wide (less if it would be taller than `max_height`), in the image's
    space (b-w or sRGB), uchar, with an alpha band already scaled by the opacity."""
    if source is not None:
        image = thumbnail(source, width, max_height)  # any accepted upload: HEIC, BMP too
        if image.interpretation not in ("srgb", "b-w") or image.format != "uchar":
            image = image.colourspace("b-w" if image.bands <= 2 else "srgb").cast("uchar")
        if not image.hasalpha():
            image = image.bandjoin_const([255])
    else:
        image = _text_mark(mark, width, max_height)
    if grey and image.bands > 2:
        image = image.colourspace("b-w")
    elif not grey and image.bands <= 2:
        image = image.colourspace("srgb")
    if mark.opacity < 1:
        alpha = (image.extract_band(image.bands - 1) * mark.opacity + 0.5).cast("uchar")
        image = image.extract_band(0, n=image.bands - 1).bandjoin(alpha)
    return image


def _text_mark(mark: Watermark, width: int, max_height: int) -> pyvips.Image:
    """`mark.text` in `mark.color`, sRGB + alpha, `width` wide (or `max_height` tall)."""
    text = html.escape(mark.text or "", quote=False)  # libvips reads Pango markup
    # Glyph widths grow with the dpi: measure once at 72, then typeset at the size that
    # fills the box, a little over so the last step is a shrink, never a blurring enlarge.
    probe = pyvips.Image.text(text, font=FONT, dpi=72)
    fit = min(width / probe.width, max_height / probe.height)
    mask = pyvips.Image.text(text, font=FONT, dpi=max(1, math.ceil(72 * fit)))
    factor = min(width / mask.width, max_height / mask.height)
    if factor != 1:
        mask = mask.resize(factor, kernel="lanczos3")
    colour = mask.new_from_image(list(mark.color)).copy(interpretation="srgb")
    return colour.bandjoin(mask)
