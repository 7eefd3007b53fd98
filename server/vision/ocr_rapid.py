"""OCR of photos and signs with RapidOCR (PP-OCRv6 small, ONNX, in the `rapidocr` wheel).

Tesseract is exact on flat pages but reads little of text in a photo: a sign at an angle,
in uneven light, on a busy background (docs/vision.md#ocr-and-documents has the figures).
PaddleOCR's detector + recogniser, as shipped inside PyPI `rapidocr` 3.10.0 (code and
weights Apache-2.0, `MODEL_LICENSES.md` in its dist-info), reads those.

Nothing is downloaded at run time: rapidocr fetches a model only when the file it expects
is missing or its checksum differs, so the engine is built with the explicit paths of the
three files inside the wheel (`Det/Rec/Cls.model_path`), which skips its downloader
altogether; a wheel without them is 503 `ocr_unavailable`, never a fetch. The recogniser's
alphabet is read from the ONNX file's metadata, not from a dictionary file it would fetch.
The angle classifier is off (`use_cls=False`): it turned upright lines upside down.

Built once per worker on first use (vision/models.py), run in the render pool like the
Tesseract path, one onnxruntime thread per render thread.
"""

from __future__ import annotations

import importlib.util
import threading
from pathlib import Path
from typing import Any

import numpy as np

from server.errors import OcrUnavailable, RenderTimeout
from server.imaging.vips import Cancel
from server.vision import models
from server.vision.ocr import Line

# Longer sides are shrunk to this: rapidocr would itself cap at 2000 (`max_side_len`), and
# decoding straight to it keeps a 12 MP photo's pixels out of memory.
MAX_SIDE = 2000
FILES = {
    "Det": "PP-OCRv6_det_small.onnx",
    "Rec": "PP-OCRv6_rec_small.onnx",
    "Cls": "ch_ppocr_mobile_v2.0_cls_mobile.onnx",  # named so it is never looked up; unused
}
# Its recogniser reads Latin and Chinese script; for other languages, Tesseract's data.
LANGUAGES = frozenset({"eng"})
# One run at a time per worker: a run at MAX_SIDE peaks at about 0.6 GB of tensors
# (bench/vision_ocr.py), so render threads running it side by side would multiply that.
# A waiting thread checks its deadline, so a queue of OCR requests ends in 504s, not a hang.
_ONE_RUN = threading.Lock()
_WAIT_STEP_S = 0.05


def model_dir() -> Path:
    """Where the wheel keeps its models (the package is not imported to find it)."""
    spec = importlib.util.find_spec("rapidocr")
    if spec is None or spec.origin is None:
        raise OcrUnavailable("the OCR engine rapidocr is not installed")
    return Path(spec.origin).parent / "models"


def build() -> Any:
    folder = model_dir()
    missing = [name for name in FILES.values() if not (folder / name).is_file()]
    if missing:
        # Its downloader would fetch them: refuse instead, nothing comes from the network.
        raise OcrUnavailable(f"the rapidocr package has no model file {missing[0]}")
    from rapidocr import RapidOCR  # 50 MB of dependencies: only in workers that read photos

    params: dict[str, Any] = {
        "Global.use_cls": False,
        "Global.log_level": "error",  # it logs every model it opens at INFO
        "EngineConfig.onnxruntime.intra_op_num_threads": 1,
        "EngineConfig.onnxruntime.inter_op_num_threads": 1,
    }
    params.update({f"{step}.model_path": str(folder / name) for step, name in FILES.items()})
    return RapidOCR(params=params)


def engine() -> Any:
    return models.load("rapidocr", build)


def read_lines(rgb: np.ndarray, cancel: Cancel | None) -> list[Line]:
    """The text lines of `rgb` (H x W x 3 uint8), top to bottom, boxes in its pixels.

    One call cannot be interrupted (onnxruntime runs to the end of the image, about 1.5 s at
    MAX_SIDE on one core): the pool answers 504 at its deadline, and the result is dropped."""
    ocr = engine()
    if cancel is not None and cancel.cancelled:
        raise RenderTimeout("OCR exceeded the time limit")
    bgr = np.ascontiguousarray(rgb[:, :, ::-1])  # rapidocr takes arrays as OpenCV's BGR
    while not _ONE_RUN.acquire(timeout=_WAIT_STEP_S):
        if cancel is not None and cancel.cancelled:
            raise RenderTimeout("OCR exceeded the time limit (waiting for the engine)")
    try:
        result = ocr(bgr)
    except Exception as exc:  # its own error types, onnxruntime's: the engine failed
        raise OcrUnavailable(f"the OCR engine failed: {str(exc)[:200]}") from exc
    finally:
        _ONE_RUN.release()
    if cancel is not None and cancel.cancelled:
        raise RenderTimeout("OCR exceeded the time limit")
    if result.boxes is None or result.txts is None:
        return []
    lines = []
    for quad, text, score in zip(result.boxes, result.txts, result.scores, strict=True):
        if not str(text).strip():
            continue
        # Lines come as quadrilaterals (text at an angle); the API's boxes are upright.
        xs, ys = np.asarray(quad)[:, 0], np.asarray(quad)[:, 1]
        x0, y0 = max(0, int(np.floor(xs.min()))), max(0, int(np.floor(ys.min())))
        x1 = min(rgb.shape[1], int(np.ceil(xs.max())))
        y1 = min(rgb.shape[0], int(np.ceil(ys.max())))
        confidence = round(min(1.0, max(0.0, float(score))), 3)
        lines.append(Line(str(text).strip(), confidence, (x0, y0, x1 - x0, y1 - y0)))
    return lines
