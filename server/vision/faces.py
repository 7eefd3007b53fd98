"""Face detection (SPEC §9): MediaPipe's BlazeFace full-range model run by onnxruntime.

The model is the ONNX conversion of MediaPipe's .tflite (server/vision/models/SOURCES.md):
onnxruntime runs it in ~2 ms of CPU where OpenCV's dnn took ~6 ms on the .tflite, with the
same outputs to 1e-4 (tests/test_vision_faces.py compares the two on real photos).

`detect(image)` answers the faces of a pyvips image as pixel boxes. The model sees 192x192:
the whole image once, then, when the image is big enough for it to matter, 2x2 overlapping
tiles, so the small faces of a group photo (10-20 px at 192) are still found. The anchor
decoding follows MediaPipe's `ssd_anchors_calculator` / `tensors_to_detections` for this
model (one 48x48 anchor grid, stride 4), and overlapping boxes merge by weighted NMS.

Boxes are cached per source (`key`: the source's etag or sha256, its orientation and the
geometry applied before detection) in fractions of the image, so a second variant of the
same photo at another size or format costs no detection.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Hashable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import onnxruntime as ort
import pyvips
from cachetools import LRUCache

from server.vision import models

MODEL_FILE = "face_detection_full_range.onnx"
SCORES, BOXES = "reshaped_classifier_face_4", "reshaped_regressor_face_4"  # the model's outputs
SIZE = 192  # the model's input side
GRID = SIZE // 4  # one anchor per 4x4 cell
MIN_SCORE = 0.5  # MediaPipe's own threshold for this model
# A face too small for the whole pass still scores ~0.25-0.55 there; photos without people
# stay under ~0.15 (tests/images, the bench corpus). Framing tiles only where such hints are.
HINT_SCORE = 0.2
NMS_IOU = 0.3
REDUCE_MOST = 6  # the largest downscale factor done by one reduce pass (see _smaller)
TILE_OVERLAP = 0.2  # a face on a tile seam is whole in one of the tiles
# Tiles per side: framing looks closer with 2x2 (faces from ~4 % of the long side), blurring
# with 3x3 (from ~2.5 %: the small faces at the back of a group photo).
FRAME_GRID, BLUR_GRID = 2, 3


def work_size(grid: int) -> int:
    """The long side at which each of grid x grid overlapping tiles is SIZE px."""
    return round(grid * SIZE / (1 + TILE_OVERLAP))


WORK = work_size(FRAME_GRID)  # below this the whole pass sees every pixel: no tiles

Array = npt.NDArray[np.float32]


@dataclass(frozen=True, slots=True)
class Box:
    """A face in pixels of the image given to detect(), with the model's confidence."""

    x: int
    y: int
    width: int
    height: int
    score: float


@dataclass(frozen=True, slots=True)
class _Found:
    """A face in fractions (0..1) of the image: what the cache keeps."""

    x0: float
    y0: float
    x1: float
    y1: float
    score: float


class _Detector:
    def __init__(self) -> None:
        options = ort.SessionOptions()
        # The render pool's threads are the parallelism: one thread per inference, as the
        # renders themselves run. A session may run from several threads at once, so no lock.
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        # ALL (with its layout rewrites) runs this model 3x faster than BASIC or EXTENDED. The
        # arena stays on: the input size never changes, and without it a run was slower for
        # no less RSS (measured: ~34 MB for import, session and runs either way).
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.session = ort.InferenceSession(
            str(models.path(MODEL_FILE)), options, providers=["CPUExecutionProvider"]
        )
        self.input = self.session.get_inputs()[0].name
        cells = (np.arange(GRID, dtype=np.float32) + 0.5) / GRID
        xs, ys = np.meshgrid(cells, cells)
        self.anchors = np.stack([xs.ravel(), ys.ravel()], axis=1)

    def infer(self, rgb: npt.NDArray[np.uint8]) -> tuple[Array, Array]:
        """The model's raw score logits (2304) and box regressions (2304 x 16) for an RGB
        array at most SIZE x SIZE, letterboxed at the top left."""
        height, width = rgb.shape[:2]
        # NCHW in -1..1; the padding is -1, as MediaPipe pads.
        blob = np.full((1, 3, SIZE, SIZE), -1, np.float32)
        blob[0, :, :height, :width] = rgb.transpose(2, 0, 1) * np.float32(1 / 127.5) - 1
        scores, boxes = self.session.run([SCORES, BOXES], {self.input: blob})
        return scores.reshape(-1), boxes.reshape(-1, 16)

    def run(self, rgb: npt.NDArray[np.uint8]) -> tuple[list[_Found], list[tuple[float, float]]]:
        """Faces in an RGB array whose longer side is SIZE, and the centres of the anchors
        that scored over HINT_SCORE, both in fractions of that array."""
        rgb = rgb[:SIZE, :SIZE]  # resize may round a side up to SIZE + 1
        height, width = rgb.shape[:2]
        scores_raw, boxes_raw = self.infer(rgb)
        scores = 1 / (1 + np.exp(-np.clip(scores_raw, -80, 80)))
        keep = np.flatnonzero(scores > MIN_SCORE)
        regs = boxes_raw[keep] / SIZE
        centres = regs[:, 0:2] + self.anchors[keep]
        half = regs[:, 2:4] / 2
        sx, sy = SIZE / width, SIZE / height  # back to fractions of the unpadded image
        hints = [(float(x * sx), float(y * sy)) for x, y in self.anchors[scores > HINT_SCORE]]
        found = [
            _Found(
                float((cx - hw) * sx),
                float((cy - hh) * sy),
                float((cx + hw) * sx),
                float((cy + hh) * sy),
                float(score),
            )
            for (cx, cy), (hw, hh), score in zip(centres, half, scores[keep], strict=True)
            if hw > 0 and hh > 0
        ]
        return found, hints


def _detector() -> _Detector:
    return models.load("blazeface-full-range", _Detector)


_cache: LRUCache[Hashable, tuple[_Found, ...]] = LRUCache(maxsize=4096)
_cache_lock = threading.Lock()  # render threads share the cache; cachetools is not thread-safe


def detect(image: pyvips.Image, key: Hashable | None = None, tiles: bool = True) -> list[Box]:
    """The faces in `image`, best first. With `key`, the answer is kept and reused for any
    image that `key` names (the same source and geometry at any size). `tiles=False` runs
    tiles only when the whole image shows no face, and only those where it scored a hint of
    one (framing needs the faces that matter; blurring needs every one); it also takes a
    tiled answer from the cache when there is one, and may read `image` twice (give it one
    in memory, not a sequential decode)."""
    found = None
    if key is not None:
        with _cache_lock:
            found = _cache.get((key, True)) or (None if tiles else _cache.get((key, False)))
    if found is None:
        found = _find(image, tiles)
        if key is not None:
            with _cache_lock:
                _cache[(key, tiles)] = found
    w, h = image.width, image.height
    boxes = []
    for f in found:
        x0, y0 = max(0, round(f.x0 * w)), max(0, round(f.y0 * h))
        x1, y1 = min(w, round(f.x1 * w)), min(h, round(f.y1 * h))
        if x1 > x0 and y1 > y0:
            boxes.append(Box(x0, y0, x1 - x0, y1 - y0, round(f.score, 3)))
    return boxes


def _find(image: pyvips.Image, tiles: bool) -> tuple[_Found, ...]:
    detector = _detector()
    grid = BLUR_GRID if tiles else FRAME_GRID
    rgb = _rgb(image)
    # Blurring always runs the tiles: their view, made first, is also what the whole pass
    # shrinks (the source is read once). Framing shrinks straight to the model's side and
    # makes the tiles' view only when it finds no face but a hint of one, which photos
    # without people never score; the engine hands it an image in memory to read twice.
    view = _shrunk(rgb, work_size(grid)) if tiles else rgb
    found, hints = detector.run(_array(view, SIZE / max(view.width, view.height)))
    if max(image.width, image.height) >= WORK and (tiles or (not found and hints)):
        view = view if tiles else _shrunk(rgb, work_size(grid))
        found += _tiles(detector, view, grid, None if tiles else hints)
    return tuple(_merge(found))


def _tiles(
    detector: _Detector, rgb: pyvips.Image, grid: int, hints: list[tuple[float, float]] | None
) -> list[_Found]:
    """Overlapping tiles, `grid` along the long side and as many as keep them square-ish
    along the other, each seen at the model's 192 px: all of them, or (with `hints`) only
    those holding a hint of a face."""
    w, h = rgb.width, rgb.height
    tw, lefts = _spans(w, max(1, math.ceil(grid * w / max(w, h))))
    th, tops = _spans(h, max(1, math.ceil(grid * h / max(w, h))))
    found: list[_Found] = []
    for left in lefts:
        for top in tops:
            if hints is not None and not any(
                left <= x * w <= left + tw and top <= y * h <= top + th for x, y in hints
            ):
                continue
            tile = rgb.crop(left, top, tw, th)
            for f in detector.run(_array(tile, SIZE / max(tw, th)))[0]:
                found.append(
                    _Found(
                        (left + f.x0 * tw) / w,
                        (top + f.y0 * th) / h,
                        (left + f.x1 * tw) / w,
                        (top + f.y1 * th) / h,
                        f.score,
                    )
                )
    return found


def _spans(side: int, count: int) -> tuple[int, list[int]]:
    """The length and starts of `count` tiles overlapping by TILE_OVERLAP across `side`."""
    if count == 1:
        return side, [0]
    length = round(side * (1 + TILE_OVERLAP) / count)
    return length, [round(i * (side - length) / (count - 1)) for i in range(count)]


def _shrunk(image: pyvips.Image, work: int) -> pyvips.Image:
    """`image` shrunk to `work` px, what the tiles need (no pass needs more), in memory:
    each tile reads its part of it."""
    long_side = max(image.width, image.height)
    if long_side > work:
        image = image.resize(work / long_side, kernel="linear")
    return image.copy_memory()


def _rgb(image: pyvips.Image) -> pyvips.Image:
    """Three uchar sRGB bands."""
    if image.hasalpha():
        image = image.flatten(background=[255] * (image.bands - 1))
    if image.bands < 3:
        image = image.colourspace("srgb")
    if image.format != "uchar":
        image = image.cast("uchar")
    return image.extract_band(0, n=3) if image.bands > 3 else image


def _array(image: pyvips.Image, scale: float) -> npt.NDArray[np.uint8]:
    if scale < 1:
        image = _smaller(image, scale)
    out: npt.NDArray[np.uint8] = np.ndarray(
        buffer=image.write_to_memory(),
        dtype=np.uint8,
        shape=(image.height, image.width, 3),
    )
    return out


def _smaller(image: pyvips.Image, scale: float) -> pyvips.Image:
    """`image` scaled down by `scale` for the model. A plain `reduce` (one antialiased linear
    pass) costs half of `resize` (an integer box shrink, then that pass) for the factors
    detection sees, 800 -> 192 px in a cold g=face; past REDUCE_MOST its kernel grows wider
    than a box shrink's single read of each pixel, so `resize` takes over."""
    if 1 / scale <= REDUCE_MOST:
        return image.reduce(1 / scale, 1 / scale, kernel="linear")
    return image.resize(scale, kernel="linear")


def _merge(found: list[_Found]) -> list[_Found]:
    """Weighted non-maximum suppression, as MediaPipe does for BlazeFace: each group of
    boxes overlapping the best one by more than NMS_IOU becomes their score-weighted mean."""
    rest = sorted(found, key=lambda f: f.score, reverse=True)
    merged: list[_Found] = []
    while rest:
        best = rest[0]
        group = [f for f in rest if _iou(best, f) > NMS_IOU]
        rest = [f for f in rest if _iou(best, f) <= NMS_IOU]
        total = sum(f.score for f in group)
        merged.append(
            _Found(
                sum(f.x0 * f.score for f in group) / total,
                sum(f.y0 * f.score for f in group) / total,
                sum(f.x1 * f.score for f in group) / total,
                sum(f.y1 * f.score for f in group) / total,
                best.score,
            )
        )
    return merged


def _iou(a: _Found, b: _Found) -> float:
    iw = min(a.x1, b.x1) - max(a.x0, b.x0)
    ih = min(a.y1, b.y1) - max(a.y0, b.y0)
    if iw <= 0 or ih <= 0:
        return 0.0
    inter = iw * ih
    return inter / ((a.x1 - a.x0) * (a.y1 - a.y0) + (b.x1 - b.x0) * (b.y1 - b.y0) - inter)
