"""Watermarks: an image (an asset) or a line of text, composited onto the sized output.

Templates hold a watermark; URLs cannot set one. `parse` validates the template's JSON,
`apply` draws it (a pipeline step, so every frame of an animation gets it).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pyvips

POSITIONS = ("center", "n", "s", "e", "w", "ne", "nw", "se", "sw", "tile")


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
    raise NotImplementedError


def apply(image: pyvips.Image, mark: Watermark, mark_source: bytes | None) -> pyvips.Image:
    """Composite `mark` onto `image` (already at its output size). `mark_source` holds the
    watermark asset's bytes when `mark.asset` is set."""
    raise NotImplementedError
