"""Builds the background-removal test photos and their known masks (tests/images/SOURCES.md).

    python tests/images/vision/make_bg.py ASTRONAUT.png CORPUS/cutout-alpha.png

astronaut.png: Debian python3-skimage 0.19.3-8, skimage/data/ (NASA, public domain).
"""

from __future__ import annotations

import sys
from pathlib import Path

import cv2
import numpy as np
import pyvips

HERE = Path(__file__).parent
TESTS = HERE.parent


def _solid(mask: np.ndarray) -> np.ndarray:
    """The largest part of `mask` with its holes filled (the pale fig flesh, which the
    colourfulness key left transparent, is part of the product), as 0/255."""
    contours, _ = cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    solid = np.zeros_like(mask)
    cv2.drawContours(solid, [max(contours, key=cv2.contourArea)], -1, 255, cv2.FILLED)
    return solid


def product(cutout: str) -> None:
    """The fig bowl (its own alpha as the truth) on a plain light-grey card with a soft
    vertical gradient and sensor noise, 640 px wide."""
    rgba = pyvips.Image.thumbnail(cutout, 640).numpy().astype(np.float32)
    h, w = rgba.shape[:2]
    rng = np.random.default_rng(3)
    ramp = np.linspace(236, 214, h, dtype=np.float32)[:, None, None]
    ground = np.repeat(np.repeat(ramp, w, 1), 3, 2) + rng.normal(0, 2.0, (h, w, 3))
    a = rgba[:, :, 3:] / 255
    out = rgba[:, :, :3] * a + ground * (1 - a)
    pyvips.Image.new_from_array(np.clip(out, 0, 255).astype(np.uint8)).write_to_file(
        str(HERE / "product.jpg"), Q=92
    )
    truth = _solid((rgba[:, :, 3] > 127).astype(np.uint8))
    pyvips.Image.new_from_array(truth).write_to_file(str(HERE / "product-mask.png"))


def person(astronaut: str) -> None:
    """The astronaut cut out (selfie segmentation refined by GrabCut on colour, checked by
    eye) and pasted onto the dragonfly photo: the paste's mask is the truth."""
    sys.path.insert(0, str(TESTS.parent))
    from server.vision.background import segment_people

    rgb = pyvips.Image.new_from_file(astronaut).numpy()[:, :, :3].copy()
    p = segment_people(rgb)
    seed = np.where(p > 0.5, cv2.GC_PR_FGD, cv2.GC_PR_BGD).astype(np.uint8)
    seed[cv2.erode((p > 0.9).astype(np.uint8), np.ones((15, 15))) > 0] = cv2.GC_FGD
    seed[cv2.dilate((p > 0.1).astype(np.uint8), np.ones((15, 15))) == 0] = cv2.GC_BGD
    bgd, fgd = np.zeros((1, 65)), np.zeros((1, 65))
    cv2.grabCut(rgb, seed, None, bgd, fgd, 5, cv2.GC_INIT_WITH_MASK)
    cut = _solid(np.isin(seed, (cv2.GC_FGD, cv2.GC_PR_FGD)).astype(np.uint8)) / 255.0
    h, w = cut.shape
    photo = pyvips.Image.thumbnail(str(TESTS / "photo.jpg"), w, height=h, crop="centre")
    ground = photo.numpy()[:, :, :3].astype(np.float32)
    out = rgb * cut[:, :, None] + ground * (1 - cut[:, :, None])
    pyvips.Image.new_from_array(out.astype(np.uint8)).write_to_file(str(HERE / "person.jpg"), Q=92)
    pyvips.Image.new_from_array((cut * 255).astype(np.uint8)).write_to_file(
        str(HERE / "person-mask.png")
    )


if __name__ == "__main__":
    person(sys.argv[1])
    product(sys.argv[2])
