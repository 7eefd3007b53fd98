"""Document correction blocks (SPEC §9, seed 003): a rendered page warped onto a real photo
with known corners is found within 2 % of the diagonal, flattened, turned upright and
enhanced, and then reads back with a low character error rate."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from conftest import IMAGES
from documents import LINES, cer, page_on_photo, rendered_text

from server.vision import document, ocr

TEXT = "\n".join(LINES)
TILTED = np.array([[300, 520], [1650, 260], [2050, 1350], [560, 1650]], dtype=np.float32)


def corner_error(found: np.ndarray, known: np.ndarray, shape: tuple[int, ...]) -> float:
    """The worst corner's distance, as a fraction of the image diagonal."""
    return float(np.linalg.norm(found - known, axis=1).max() / np.hypot(*shape[:2]))


@pytest.mark.parametrize("corners", [None, TILTED], ids=["leaning", "tilted"])
def test_a_page_on_a_photo_is_found_within_2_percent_of_the_diagonal(
    corners: np.ndarray | None,
) -> None:
    photo, known = page_on_photo(corners=corners)
    found = document.find_corners(photo)
    assert found is not None
    assert corner_error(found, known, photo.shape) < 0.02


def test_the_corrected_page_reads_back_where_the_photo_does_not() -> None:
    photo, _ = page_on_photo()
    raw = "\n".join(
        line.text for line in ocr.read_lines(cv2.cvtColor(photo, cv2.COLOR_RGB2GRAY), "eng", None)
    )
    corners = document.find_corners(photo)
    assert corners is not None
    page, turn = document.upright(document.warp(photo, corners))
    assert turn == 0
    read = "\n".join(line.text for line in ocr.read_lines(document.enhance(page), "eng", None))
    assert cer(TEXT, read) <= 0.03
    assert cer(TEXT, raw) > 0.1  # what correcting the page is for


def test_the_warp_is_the_size_of_the_page_it_flattens() -> None:
    photo, known = page_on_photo()
    flat = document.warp(photo, known)
    top, left = np.linalg.norm(known[1] - known[0]), np.linalg.norm(known[3] - known[0])
    assert abs(flat.shape[1] - max(top, np.linalg.norm(known[2] - known[3]))) <= 1
    assert abs(flat.shape[0] - max(left, np.linalg.norm(known[2] - known[1]))) <= 1


@pytest.mark.parametrize(
    ("turned", "expected"),
    [(cv2.ROTATE_180, 180), (cv2.ROTATE_90_CLOCKWISE, 270), (cv2.ROTATE_90_COUNTERCLOCKWISE, 90)],
)
def test_a_turned_page_is_turned_back_upright(turned: int, expected: int) -> None:
    page = rendered_text(dpi=300)
    back, turn = document.upright(cv2.rotate(page, turned))
    assert turn == expected
    assert np.array_equal(back, page)


def test_a_page_with_too_little_text_to_judge_is_left_as_it_is() -> None:
    blank = np.full((400, 300), 255, np.uint8)
    back, turn = document.upright(blank)
    assert turn == 0 and back is blank


def test_a_photo_without_a_page_has_no_corners() -> None:
    photo = cv2.cvtColor(cv2.imread(str(IMAGES / "photo.jpg")), cv2.COLOR_BGR2RGB)
    assert document.find_corners(photo) is None


def test_enhance_evens_the_light_and_blackens_faint_text() -> None:
    page = rendered_text(dpi=300)
    width = page.shape[1]
    # Grey ink (about 100) on paper lit from 100 % at the left down to 55 % at the right.
    light = np.linspace(1.0, 0.55, width, dtype=np.float32)[None, :]
    faint = (100 + page.astype(np.float32) * (155 / 255)) * light
    out = document.enhance(faint.astype(np.uint8))
    paper = cv2.erode((page == 255).astype(np.uint8), np.ones((9, 9), np.uint8)).astype(bool)
    ink = cv2.erode((page < 60).astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
    assert np.percentile(faint[paper], 99) - np.percentile(faint[paper], 1) > 100  # uneven
    assert np.percentile(out[paper], 1) >= 235  # even, white
    assert np.median(out[ink]) <= 40  # black
    assert cer(TEXT, "\n".join(line.text for line in ocr.read_lines(out, "eng", None))) <= 0.02
