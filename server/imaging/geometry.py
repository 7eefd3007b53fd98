"""Output sizes for each fit mode, and the shrink-on-load factor. Pure arithmetic, no libvips."""

from __future__ import annotations

import math
from dataclasses import dataclass

from server.spec import Fit


@dataclass(frozen=True, slots=True)
class Plan:
    """Resize (W, H) to `scaled`, then crop (cover) or pad (contain) to `box`."""

    scaled: tuple[int, int]
    box: tuple[int, int]


def plan(
    size: tuple[int, int],
    target: tuple[int | None, int | None],
    fit: Fit,
    enlarge: bool,
    max_side: int,
    max_pixels: int,
) -> Plan:
    """Where an image of `size` ends up for a `target` box (device pixels) and `fit`."""
    w, h = size
    tw, th = target
    if tw is None and th is None:
        sx = sy = 1.0
    elif tw is None or th is None or fit == "inside" or fit == "contain":
        ratios = [r for r in (tw and tw / w, th and th / h) if r]
        sx = sy = min(ratios)
    elif fit in ("cover", "outside"):
        sx = sy = max(tw / w, th / h)
    else:  # fill
        sx, sy = tw / w, th / h
    if not enlarge:
        sx, sy = min(sx, 1.0), min(sy, 1.0)
    scaled = (max(1, round(w * sx)), max(1, round(h * sy)))
    box = scaled
    if tw is not None and th is not None:
        if fit == "cover":
            box = (min(tw, scaled[0]), min(th, scaled[1]))
        elif fit == "contain":
            box = (tw, th)
    # Whatever was asked, never produce more than the output limits allow: shrink to fit,
    # landing the long side exactly on max_side when that is the binding limit.
    fits = min(1.0, max_side / max(box), math.sqrt(max_pixels / (box[0] * box[1])))
    if fits < 1.0:
        scaled = _scale_down(scaled, fits, max_side)
        box = _scale_down(box, fits, max_side)
    return Plan(scaled=scaled, box=box)


def pad_offset(scaled: tuple[int, int], box: tuple[int, int]) -> tuple[int, int]:
    """Top-left of the `scaled` image centred in a padded (contain) `box`: the resize step
    embeds there, and seed 004's retain_location reports it, so both use this one rule."""
    return (box[0] - scaled[0]) // 2, (box[1] - scaled[1]) // 2


def _scale_down(size: tuple[int, int], fits: float, max_side: int) -> tuple[int, int]:
    # The epsilon keeps 8192 * (max_side / 8192.0000001) from flooring to 8191.
    w, h = (min(max_side, max(1, math.floor(v * fits + 1e-9))) for v in size)
    return w, h


def shrink_factor(source: tuple[int, int], scaled: tuple[int, int], rule: str) -> int:
    """The largest of 1, 2, 4, 8 to decode a JPEG/WebP at and still resize down to `scaled`.

    `fast` keeps at least the target size, as sharp's fastShrinkOnLoad and PIL's draft do;
    `quality` keeps at least twice it, as vips_thumbnail does (sharper, ~15 % dearer)."""
    margin = 2 if rule == "quality" else 1
    best = 1
    for factor in (2, 4, 8):
        if source[0] // factor >= scaled[0] * margin and source[1] // factor >= scaled[1] * margin:
            best = factor
    return best


def gravity_offset(
    gravity: str, focal: tuple[float, float] | None, scaled: tuple[int, int], box: tuple[int, int]
) -> tuple[int, int]:
    """Top-left of `box` within `scaled` for a named gravity or a focal point."""
    free_x, free_y = scaled[0] - box[0], scaled[1] - box[1]
    if focal is not None:
        x = round(focal[0] * scaled[0] - box[0] / 2)
        y = round(focal[1] * scaled[1] - box[1] / 2)
        return min(max(0, x), free_x), min(max(0, y), free_y)
    # Fractions of the free space left of and above the box, for each compass gravity.
    fx, fy = _COMPASS.get(gravity, (0.5, 0.5))
    return round(free_x * fx), round(free_y * fy)


_COMPASS = {
    "n": (0.5, 0.0),
    "s": (0.5, 1.0),
    "e": (1.0, 0.5),
    "w": (0.0, 0.5),
    "ne": (1.0, 0.0),
    "nw": (0.0, 0.0),
    "se": (1.0, 1.0),
    "sw": (0.0, 1.0),
}
