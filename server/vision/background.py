"""Background removal (SPEC §9): an alpha mask for the subject of a photo, on the CPU.

Which method runs is decided per image, in this order:
1. `IMGCDN_BG_MODEL` names an ONNX model: it runs on every image (matting.py).
2. The image's border is plain (one colour model explains almost all of it): a product
   shot. The border's colours are the background's model; pixels far from it seed
   GrabCut as probable subject, the border itself is sure background.
3. Otherwise: MediaPipe selfie segmentation (people on any background).
The mask is found on a copy at most WORK px on its long side (the models see 256 px
anyway) and scaled up by libvips, so the cost hardly grows with the photo's size.
"""

from __future__ import annotations

import threading
from importlib import resources
from typing import Any, Literal

import cv2
import numpy as np
import numpy.typing as npt
import pyvips

from server.vision import matting
from server.vision.models import load

WORK = 512  # long side of the copy the mask is found on
SELFIE = 256  # the selfie model's square input
BORDER = 0.04  # the border strip, as a fraction of the short side
PLAIN_SHARE = 0.95  # of the fitted border: its spread
PLAIN_SPREAD = 6.0  # largest spread (Lab distance, 8-bit units) of a plain background
Method = Literal["model", "classical", "segmentation"]
U8 = npt.NDArray[np.uint8]
F32 = npt.NDArray[np.float32]
_NET_LOCK = threading.Lock()  # 5 ms of inference: one net per process, taken in turn


def _selfie() -> cv2.dnn.Net:
    path = resources.files("server.vision") / "models" / "selfie_segmentation.tflite"
    data = np.frombuffer(path.read_bytes(), np.uint8)
    # opencv 5 needs the classic engine for TFLite graphs (the new one drops outputs).
    read: Any = cv2.dnn.readNetFromTFLite
    classic = getattr(cv2.dnn, "ENGINE_CLASSIC", None)
    net: cv2.dnn.Net = read(data, engine=classic) if classic is not None else read(data)
    return net


def segment_people(rgb: U8) -> F32:
    """P(person) per pixel of `rgb` (H x W x 3 uint8), from the 256x256 selfie model."""
    net = load("selfie_segmentation", _selfie)
    small = cv2.resize(rgb, (SELFIE, SELFIE), interpolation=cv2.INTER_AREA)
    blob = cv2.dnn.blobFromImage(small.astype(np.float32) / 255.0)
    with _NET_LOCK:  # a Net holds its input: setInput + forward from two threads would mix
        net.setInput(blob)
        out = np.asarray(net.forward(), np.float32).reshape(SELFIE, SELFIE)
    return np.asarray(cv2.resize(out, (rgb.shape[1], rgb.shape[0])), np.float32)


def _border_mask(shape: tuple[int, ...]) -> npt.NDArray[np.bool_]:
    h, w = shape[:2]
    b = max(2, round(min(h, w) * BORDER))
    edge = np.zeros((h, w), bool)
    edge[:b], edge[-b:], edge[:, :b], edge[:, -b:] = True, True, True, True
    return edge


def _distance(rgb: U8) -> tuple[F32, float]:
    """The colour model of the border: Lab as a plane over (x, y) (so a lighting gradient
    across a studio card still fits), fitted to the border, then refitted to the closer
    80 % of it (a subject may touch the frame). Returns each pixel's distance to the model
    and the border's spread (the distance that covers PLAIN_SHARE of the fitted part)."""
    smooth = cv2.GaussianBlur(rgb, (5, 5), 0)  # sensor noise is not colour
    lab = cv2.cvtColor(smooth, cv2.COLOR_RGB2LAB).astype(np.float32)
    h, w = lab.shape[:2]
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    basis = np.stack((np.ones_like(xs), xs / w, ys / h), axis=2)
    edge = _border_mask(lab.shape)
    x, y = basis[edge], lab[edge]
    keep = np.ones(len(x), bool)
    for _ in range(2):
        coef = np.linalg.lstsq(x[keep], y[keep], rcond=None)[0]
        residual = np.linalg.norm(y - x @ coef, axis=1)
        keep = residual <= np.quantile(residual, 0.8)
    spread = float(np.quantile(residual[keep], PLAIN_SHARE))
    dist = np.linalg.norm(lab - basis @ coef, axis=2)
    return np.asarray(dist, np.float32), spread


def plain_border(rgb: U8) -> bool:
    """True when the border is one colour give or take lighting: a product on a plain
    background (a gradient across the card stays within the model)."""
    return _distance(rgb)[1] <= PLAIN_SPREAD


def classical(rgb: U8, iterations: int = 4) -> F32:
    """The subject of a plain-background photo: colour distance to the border seeds
    GrabCut (border = sure background, far colours = probable subject)."""
    dist, spread = _distance(rgb)
    far = dist > max(3.0 * spread, 10.0)
    seed: U8 = np.full(rgb.shape[:2], cv2.GC_PR_BGD, np.uint8)
    seed[far] = cv2.GC_PR_FGD
    seed[dist > max(6.0 * spread, 25.0)] = cv2.GC_FGD
    h, w = rgb.shape[:2]
    b = max(2, round(min(h, w) * BORDER / 2))
    seed[:b], seed[-b:], seed[:, :b], seed[:, -b:] = (cv2.GC_BGD,) * 4
    if not (seed == cv2.GC_PR_FGD).any() and not (seed == cv2.GC_FGD).any():
        return np.zeros(seed.shape, np.float32)  # nothing stands out: no subject
    bgd, fgd = np.zeros((1, 65), np.float64), np.zeros((1, 65), np.float64)
    grab: Any = cv2.grabCut  # its stubs want a rect even when the mask seeds it
    grab(rgb, seed, None, bgd, fgd, iterations, cv2.GC_INIT_WITH_MASK)
    fg = np.isin(seed, (cv2.GC_FGD, cv2.GC_PR_FGD)).astype(np.uint8)
    return _keep_large(fg)


def _keep_large(fg: U8) -> F32:
    """Drop specks: keep connected parts of at least 2 % of the largest one."""
    count, labels, stats, _ = cv2.connectedComponentsWithStats(fg, connectivity=8)
    if count <= 1:
        return fg.astype(np.float32)
    areas = stats[1:, cv2.CC_STAT_AREA]
    keep = np.flatnonzero(areas >= 0.02 * areas.max()) + 1
    return np.isin(labels, keep).astype(np.float32)


def choose(rgb: U8, model: str | None) -> Method:
    if model:
        return "model"
    return "classical" if plain_border(rgb) else "segmentation"


def mask(rgb: U8, model: str | None = None) -> tuple[F32, Method]:
    """P(subject) in 0..1 for each pixel of `rgb`, and the method that found it."""
    method = choose(rgb, model)
    if method == "model":
        assert model is not None
        return matting.run(model, rgb), method
    if method == "classical":
        return classical(rgb), method
    return segment_people(rgb), method


def cut_out(image: pyvips.Image, model: str | None = None) -> pyvips.Image:
    """`image` as 8-bit sRGB with the subject's mask as its alpha channel (an alpha it
    already had is kept: what was transparent stays transparent)."""
    if image.interpretation != "srgb" or image.format != "uchar":
        image = image.colourspace("srgb").cast("uchar")  # B/W, 16-bit: 8-bit sRGB
    # Read twice (the mask, then the join): decode once into memory, which also frees a
    # sequential-access source (delivery's fast path) from reading out of order.
    image = image.copy_memory()
    old = image.extract_band(3) if image.bands > 3 else None
    colour = image.extract_band(0, n=3)
    scale = min(1.0, WORK / max(image.width, image.height))
    small = colour.resize(scale) if scale < 1 else colour
    found, _ = mask(np.ascontiguousarray(small.numpy()), model)
    alpha = pyvips.Image.new_from_array(np.rint(found * 255).astype(np.uint8))
    if alpha.width != image.width or alpha.height != image.height:
        alpha = alpha.resize(image.width / alpha.width, vscale=image.height / alpha.height)
        # resize may round a side one pixel short: pad by repeating the edge
        alpha = alpha.embed(0, 0, image.width, image.height, extend="copy")
    alpha = alpha.cast("uchar")
    if old is not None:
        alpha = (alpha.cast("float") * old / 255).cast("uchar")
    return colour.bandjoin(alpha).copy(interpretation="srgb")
