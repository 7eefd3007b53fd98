"""The render settings every render reads, taken from Settings once at start."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class RenderOptions:
    shrink_rule: str = "fast"
    jpeg_preset: str = "fast"
    avif_effort: int = 0
    max_side: int = 8192
    max_pixels: int = 40_000_000
    bg_model: str = ""  # IMGCDN_BG_MODEL: the operator's matting model, or the built-ins
