"""An image's pixels for the vision code: decoded by the delivery engine's loaders.

The same allow-listed loaders, source limits, colour handling and EXIF auto-orientation
as a render (imaging/pipeline.py), shrunk on load when the model needs fewer pixels than
the photo has, then handed over as a numpy array (what OpenCV and Tesseract's input take).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyvips

from server.errors import Undecodable
from server.imaging import pipeline
from server.imaging.inspect import SourceInfo
from server.imaging.options import RenderOptions
from server.imaging.vips import Cancel
from server.spec import TransformSpec


@dataclass(frozen=True, slots=True)
class Pixels:
    rgb: np.ndarray  # H x W x 3, uint8, upright
    scale: float  # rgb width / the upright source width: divide boxes by it

    @property
    def grey(self) -> np.ndarray:
        # ITU-R 601 luma, as OpenCV's cvtColor computes it, without importing cv2 here.
        weights = np.array([0.299, 0.587, 0.114], dtype=np.float32)
        grey: np.ndarray = np.clip(self.rgb @ weights + 0.5, 0, 255).astype(np.uint8)
        return grey


def load(
    data: bytes, info: SourceInfo, max_side: int, options: RenderOptions, cancel: Cancel
) -> Pixels:
    """The upright sRGB pixels, longest side at most `max_side` (never enlarged), alpha
    flattened onto white (text and pages are dark on light)."""
    spec = TransformSpec(width=max_side, height=max_side, fit="inside")
    job = pipeline.Job(TransformSpec(), "png", options)
    try:
        image, _, _ = pipeline.open_source(
            data, info, spec, options, cancel, False, fail_on="truncated", access="random"
        )
        image = pipeline.autorot(pipeline.to_srgb(image, job), job)
        longest = max(image.width, image.height)
        if longest > max_side:
            image = image.resize(max_side / longest)
        if image.hasalpha():
            image = image.flatten(background=[255] * (image.bands - 1))
        if image.bands < 3:
            image = image.colourspace("srgb")
        image = cancel.watch(image.extract_band(0, n=3).cast("uchar"))
        rgb = np.asarray(image.numpy(), dtype=np.uint8).reshape(image.height, image.width, 3)
    except pyvips.Error as exc:
        if cancel.cancelled:
            raise
        raise Undecodable(f"the image cannot be processed: {pipeline.last_line(exc)}") from exc
    return Pixels(rgb=rgb, scale=rgb.shape[1] / info.width)
