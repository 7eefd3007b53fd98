"""The pipeline's face steps (SPEC §9): blur every face, and a cover crop kept on the faces.

Both ask server/vision/faces for the boxes of the image as the steps before them left it
(upright, cropped, turned, flipped), under a key naming that source and that geometry, so
the blur and the crop of one render, and every later variant of the same photo, share one
detection. The model is loaded only when a URL or op asks for one of these.
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import TYPE_CHECKING

import pyvips

from server.errors import NotAvailable

if TYPE_CHECKING:
    from server.imaging.pipeline import Job
    from server.vision.faces import Box

BLUR_FLOOR = 1 / 6  # sigma at least this share of the face's shorter side: unrecognisable
MARGIN = 0.3  # grow each box by this much a side: the model's box stops above the chin


def key(job: Job) -> Hashable | None:
    """The detection cache key for the image the face steps see, or None (no cache)."""
    if job.source_key is None or job.frame:
        return None
    spec = job.spec
    return (job.source_key, spec.crop, spec.trim, int(spec.rot % 360 // 90), spec.flip)


def framing_side() -> int:
    """The long side framing detection looks at: an image at least this large gives the
    answer any larger one of the same photo gives (detection shrinks both to it)."""
    try:
        from server.vision import faces  # here: a process that never asks imports no onnxruntime
    except ImportError as exc:
        raise _unavailable(exc) from exc
    return faces.WORK


def find(image: pyvips.Image, job: Job, tiles: bool = True) -> list[Box]:
    try:
        from server.vision import faces
    except ImportError as exc:
        raise _unavailable(exc) from exc
    boxes = faces.detect(image, key(job), tiles)
    job.faces.append(len(boxes))
    return boxes


def blur_faces(image: pyvips.Image, job: Job) -> pyvips.Image:
    sigma = job.spec.blur_faces
    if sigma is None:
        return image
    # Decoded once into memory: detection reads it all, then each face's region again (a
    # sequential source could not be read twice).
    image = image.copy_memory()
    # Each frame of an animation is searched on its own (faces move), in framing mode: the
    # tiles of every frame of a long GIF would cost seconds.
    boxes = find(image, job, tiles=not job.frame)
    if not boxes:
        return image
    # The requested sigma is in output pixels; this image is larger when resize follows.
    scale = _scale_to_output(image, job)
    for box in boxes:
        x, y, w, h = _grown(box, image.width, image.height)
        strength = max(sigma / scale, BLUR_FLOOR * min(box.width, box.height))
        # Blur a larger piece and keep its middle, so the face's edges mix with the real
        # surroundings rather than with libvips' copied edge pixels.
        pad = int(2 * strength) + 1
        ox, oy = max(0, x - pad), max(0, y - pad)
        ow, oh = min(image.width, x + w + pad) - ox, min(image.height, y + h + pad) - oy
        piece = image.crop(ox, oy, ow, oh).gaussblur(strength, precision="approximate")
        image = image.insert(piece.cast(image.format).crop(x - ox, y - oy, w, h), x, y)
    return image


def cover_on_faces(
    image: pyvips.Image, job: Job, boxes: list[Box], shrink: float, box: tuple[int, int]
) -> pyvips.Image:
    """A `box` crop of the resized `image`, centred on the faces found before resizing
    (`shrink` = resized / detected size): all of them when they fit, else the largest."""
    bw, bh = box
    scaled = [_scaled(b, shrink) for b in boxes]
    x0, y0 = min(b[0] for b in scaled), min(b[1] for b in scaled)
    x1, y1 = max(b[2] for b in scaled), max(b[3] for b in scaled)
    if x1 - x0 > bw or y1 - y0 > bh:
        x0, y0, x1, y1 = max(scaled, key=lambda b: (b[2] - b[0]) * (b[3] - b[1]))
    left = _clamp((x0 + x1) / 2 - bw / 2, image.width - bw)
    # A little above centre: a face framed with room for the shoulders below it.
    top = _clamp((y0 + y1) / 2 - bh * 0.4, image.height - bh)
    used = sum(
        1
        for b in scaled
        if left <= (b[0] + b[2]) / 2 <= left + bw and top <= (b[1] + b[3]) / 2 <= top + bh
    )
    job.faces[-1] = used
    return image.crop(left, top, bw, bh)


def _unavailable(exc: ImportError) -> NotAvailable:
    return NotAvailable(f"face detection needs onnxruntime, which is not installed ({exc.name})")


def _scaled(b: Box, s: float) -> tuple[float, float, float, float]:
    return b.x * s, b.y * s, (b.x + b.width) * s, (b.y + b.height) * s


def _clamp(value: float, most: int) -> int:
    return max(0, min(most, round(value)))


def _grown(box: Box, width: int, height: int) -> tuple[int, int, int, int]:
    dx, dy = round(box.width * MARGIN), round(box.height * MARGIN)
    x, y = max(0, box.x - dx), max(0, box.y - dy)
    return x, y, min(width, box.x + box.width + dx) - x, min(height, box.y + box.height + dy) - y


def _scale_to_output(image: pyvips.Image, job: Job) -> float:
    """Output pixels per pixel of `image`, as resize will make them (1 without a size)."""
    tw, th = job.spec.target
    fit = job.spec.effective_fit
    sx = tw / image.width if tw else None
    sy = th / image.height if th else None
    if sx is None and sy is None:
        return 1.0
    if sx is None or sy is None:
        s = sx or sy or 1.0
    else:
        s = max(sx, sy) if fit in ("cover", "outside") else min(sx, sy)
    return s if job.spec.enlarge else min(1.0, s)
