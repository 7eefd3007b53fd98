"""Seed 003's visual correction tasks (SPEC §9, §10) on one image, in the render pool.

Types: 0 document crop + upright, 1 text enhancement, 2 both, 3 product crop, 4 product
crop + background removal. Built on document.py (corners, warp, upright, enhance) and
background.py (the subject's mask); this module only chains them and encodes once.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import pyvips

from server.errors import TooLarge
from server.imaging.inspect import SourceInfo
from server.imaging.options import RenderOptions
from server.imaging.vips import Cancel
from server.spec import Format
from server.vision import background, document, pixels

MAX_SIDE = 4096  # the seed's resolution limit, checked from the header before decoding
MARGIN = 0.02  # of the product box's longer side, kept around it: no edge cut flush
SUBJECT = 0.5  # P(subject) above which a pixel belongs to the product's box


@dataclass(frozen=True, slots=True)
class Corrected:
    fmt: Format
    body: bytes
    width: int
    height: int


def check_limits(info: SourceInfo, field: str) -> None:
    """The seed's limits, from the header: 4096 x 4096 (an upright rotation is the same)."""
    if max(info.width, info.height) > MAX_SIDE:
        raise TooLarge(
            f"{field} is {info.width}x{info.height}, the limit is {MAX_SIDE}x{MAX_SIDE}", field
        )


def correct(
    data: bytes, info: SourceInfo, kind: int, options: RenderOptions, cancel: Cancel
) -> Corrected:
    """Run task `kind` (0..4) on the decoded source; encode the result."""
    rgb = pixels.load(data, info, MAX_SIDE, options, cancel).rgb
    if kind <= 2:
        page: np.ndarray = rgb
        if kind in (0, 2):
            corners = document.find_corners(rgb)
            if corners is not None:  # no page found: the whole photo is the page
                page = document.warp(rgb, corners)
            page, _ = document.upright(page, cancel)
        if kind in (1, 2):
            return _encode(document.enhance(page), "png")  # grey text: lossless and small
        return _encode(page, "jpeg")
    found = subject_mask(rgb, options.bg_model or None)
    top, bottom, left, right = product_box(found)
    crop = np.ascontiguousarray(rgb[top:bottom, left:right])
    if kind == 3:
        return _encode(crop, "jpeg")
    alpha = np.rint(found[top:bottom, left:right] * 255).astype(np.uint8)
    return _encode(np.dstack([crop, alpha]), "png")


def subject_mask(rgb: np.ndarray, model: str | None = None) -> np.ndarray:
    """P(subject) per pixel of `rgb`, found on a copy at background.WORK size."""
    height, width = rgb.shape[:2]
    scale = min(1.0, background.WORK / max(height, width))
    small = cv2.resize(rgb, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    found, _ = background.mask(np.ascontiguousarray(small), model)
    full: np.ndarray = cv2.resize(found, (width, height), interpolation=cv2.INTER_LINEAR)
    return full


def product_box(found: np.ndarray) -> tuple[int, int, int, int]:
    """(top, bottom, left, right) of the subject plus MARGIN; the whole image if none."""
    height, width = found.shape[:2]
    ys, xs = np.nonzero(found > SUBJECT)
    if len(ys) == 0:
        return 0, height, 0, width
    pad = round(MARGIN * max(ys.max() - ys.min(), xs.max() - xs.min()))
    top, bottom = max(0, int(ys.min()) - pad), min(height, int(ys.max()) + 1 + pad)
    left, right = max(0, int(xs.min()) - pad), min(width, int(xs.max()) + 1 + pad)
    return top, bottom, left, right


def _encode(image: np.ndarray, fmt: Format) -> Corrected:
    vips = pyvips.Image.new_from_array(np.ascontiguousarray(image))
    interpretation = "b-w" if image.ndim == 2 else "srgb"
    vips = vips.copy(interpretation=interpretation)
    suffix = ".jpg[Q=90,strip]" if fmt == "jpeg" else ".png[compression=6,strip]"
    body: bytes = vips.write_to_buffer(suffix)
    return Corrected(fmt, body, vips.width, vips.height)
