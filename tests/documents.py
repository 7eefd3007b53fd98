"""Pages with known text and known corners, made at test time from rendered text and a
real photo (tests/images/photo.jpg), and the character error rate to judge OCR by."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pyvips

IMAGES = Path(__file__).parent / "images"
LINES = (
    "Invoice 20417 for imgcdn services",
    "Delivered on the first of December",
    "Total due within thirty days: 1280.50",
    "Questions? Write to billing at example.org",
)


def rendered_text(lines: tuple[str, ...] = LINES, dpi: int = 200, margin: int = 60) -> np.ndarray:
    """Black DejaVu Sans text on white, H x W uint8 grey (pyvips' own text renderer)."""
    ink = pyvips.Image.text("\n".join(lines), dpi=dpi, font="DejaVu Sans", spacing=dpi // 6)
    page = (255 - ink).embed(
        margin, margin, ink.width + 2 * margin, ink.height + 2 * margin, background=[255]
    )
    grey: np.ndarray = page.numpy().astype(np.uint8)
    return grey


def png(image: np.ndarray) -> bytes:
    ok, data = cv2.imencode(".png", image if image.ndim == 2 else image[:, :, ::-1])
    assert ok
    return bytes(data)


def jpeg(rgb: np.ndarray, quality: int = 90) -> bytes:
    ok, data = cv2.imencode(".jpg", rgb[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, quality])
    assert ok
    return bytes(data)


def page_on_photo(
    size: tuple[int, int] = (2400, 1800), corners: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """The rendered page warped in perspective onto the photo (scaled to `size`), with
    uneven light across it; and the page's corners in the result (TL, TR, BR, BL)."""
    width, height = size
    photo = pyvips.Image.new_from_file(str(IMAGES / "photo.jpg")).thumbnail_image(
        width, height=height, size="force"
    )
    rgb = np.array(photo.numpy(), dtype=np.uint8)
    page = cv2.cvtColor(rendered_text(dpi=300), cv2.COLOR_GRAY2RGB)
    if corners is None:
        corners = np.array(
            [[0.22, 0.18], [0.80, 0.24], [0.76, 0.78], [0.18, 0.70]], dtype=np.float32
        ) * np.array([width, height], dtype=np.float32)
    ph, pw = page.shape[:2]
    source = np.array([[0, 0], [pw - 1, 0], [pw - 1, ph - 1], [0, ph - 1]], dtype=np.float32)
    matrix = cv2.getPerspectiveTransform(source, corners)
    warped = cv2.warpPerspective(page, matrix, (width, height))
    mask = cv2.warpPerspective(np.full((ph, pw), 255, np.uint8), matrix, (width, height))
    # Light falling off from the top left: the page is 100 % bright there, 70 % far away.
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    light = 1.0 - 0.3 * (xs / width + ys / height) / 2
    lit = (warped.astype(np.float32) * light[..., None]).astype(np.uint8)
    out = np.where(mask[..., None] > 127, lit, rgb)
    return out.astype(np.uint8), corners


def cer(expected: str, got: str) -> float:
    """Character error rate: edit distance / len(expected), whitespace runs as one space."""
    a, b = " ".join(expected.split()), " ".join(got.split())
    previous = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        current = [i]
        for j, cb in enumerate(b, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (ca != cb)))
        previous = current
    return previous[-1] / max(1, len(a))
