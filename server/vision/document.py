"""Document correction building blocks (SPEC §9, seed 003's tasks 0-2): find a page's four
corners, warp it flat, turn it upright, enhance its text.

Classical OpenCV, no model: edges -> the largest convex quadrilateral -> a perspective warp
(pyvips has no perspective transform). Orientation is Tesseract's OSD (vision/ocr.py). All
functions take and return numpy arrays (H x W x 3 RGB, or H x W grey, uint8) so the seed's
tasks can chain them in one render job; none of them decodes or encodes.

Limits (docs/vision.md#ocr-and-documents): the page must be whole in the frame and stand
out from what it lies on; a white page on a white table, or heavy clutter, finds no quad (None).
"""

from __future__ import annotations

import cv2
import numpy as np

from server.imaging.vips import Cancel
from server.vision import ocr

DETECT_SIDE = 1024  # corners are found on a copy this size: edges are cleaner, 10x faster
MIN_AREA = 0.12  # of the image: smaller quads are a label or a window, not the page
FILLED = 0.85  # of its quad, the outline's own area
TURNS = {90: cv2.ROTATE_90_CLOCKWISE, 180: cv2.ROTATE_180, 270: cv2.ROTATE_90_COUNTERCLOCKWISE}


def find_corners(rgb: np.ndarray) -> np.ndarray | None:
    """The page's corners in `rgb`'s pixels, as a 4 x 2 float32 array ordered top-left,
    top-right, bottom-right, bottom-left; None when no convex quad covers MIN_AREA."""
    height, width = rgb.shape[:2]
    scale = min(1.0, DETECT_SIDE / max(height, width))
    small = cv2.resize(rgb, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    grey = cv2.GaussianBlur(cv2.cvtColor(small, cv2.COLOR_RGB2GRAY), (5, 5), 0)
    floor = MIN_AREA * small.shape[0] * small.shape[1]
    best: np.ndarray | None = None
    for mask in _candidates(small, grey):
        quad = _largest_quad(mask, floor)
        if quad is not None and (best is None or cv2.contourArea(quad) > cv2.contourArea(best)):
            best = quad
    return None if best is None else order(best / scale)


def _candidates(rgb: np.ndarray, grey: np.ndarray) -> list[np.ndarray]:
    """Binary maps whose outlines may be the page: its edges (Canny, thresholds around the
    median so one setting fits dark and bright photos), bright regions (Otsu) and paper-like
    ones (bright and colourless), which still outline a page whose edges run into clutter
    such as foliage, or a bright sky."""
    median = float(np.median(grey))
    edges = cv2.Canny(grey, int(max(0, 0.66 * median)), int(min(255, 1.33 * median)))
    edges = cv2.morphologyEx(edges, cv2.MORPH_CLOSE, np.ones((5, 5), np.uint8))
    _, bright = cv2.threshold(grey, 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    bright = cv2.morphologyEx(bright, cv2.MORPH_OPEN, np.ones((7, 7), np.uint8))
    hsv = cv2.cvtColor(rgb, cv2.COLOR_RGB2HSV)
    _, light = cv2.threshold(hsv[:, :, 2], 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    paper = cv2.bitwise_and(light, (hsv[:, :, 1] < 60).astype(np.uint8) * 255)
    paper = cv2.morphologyEx(paper, cv2.MORPH_CLOSE, np.ones((9, 9), np.uint8))
    # A wide opening cuts off leaves or fingers touching the page's edge.
    paper = cv2.morphologyEx(paper, cv2.MORPH_OPEN, np.ones((21, 21), np.uint8))
    return [edges, bright, paper]


def _largest_quad(mask: np.ndarray, floor: float) -> np.ndarray | None:
    contours, _ = cv2.findContours(mask, cv2.RETR_LIST, cv2.CHAIN_APPROX_SIMPLE)
    for contour in sorted(contours, key=cv2.contourArea, reverse=True)[:10]:
        hull = cv2.convexHull(contour)
        if cv2.contourArea(hull) < floor:
            continue  # a thin outline may hold a small area and still have a big hull
        for tolerance in (0.02, 0.04):
            quad = cv2.approxPolyDP(hull, tolerance * cv2.arcLength(hull, True), True)
            # The outline must fill its quad: a page does, a blob of sky and page does not.
            filled = cv2.contourArea(contour) / max(1.0, cv2.contourArea(quad))
            if len(quad) == 4 and cv2.isContourConvex(quad) and filled > FILLED:
                return _fit_sides(contour.reshape(-1, 2).astype(np.float32), quad.reshape(4, 2))
    return None


def _fit_sides(points: np.ndarray, quad: np.ndarray) -> np.ndarray:
    """The quad's corners moved to where its sides' lines meet, each side a robust line fit
    (Huber) to the outline's points along its middle: a leaf or a thumb over one corner
    bends the polygon there, but is an outlier to the straight page edge."""
    quad = quad.astype(np.float32)
    lines = []
    for i in range(4):
        a, b = quad[i], quad[(i + 1) % 4]
        side = b - a
        length = float(np.linalg.norm(side))
        rel = points - a
        t = rel @ side / (length * length)
        distance = np.abs(side[0] * rel[:, 1] - side[1] * rel[:, 0]) / length
        near = points[(t > 0.15) & (t < 0.85) & (distance < 0.05 * length)]
        if len(near) < 5:
            return quad
        vx, vy, x0, y0 = cv2.fitLine(near, cv2.DIST_HUBER, 0, 0.01, 0.01).ravel()
        lines.append((np.array([x0, y0]), np.array([vx, vy])))
    corners = []
    for i in range(4):
        (p, u), (q, v) = lines[i - 1], lines[i]
        det = u[0] * -v[1] + v[0] * u[1]
        if abs(det) < 1e-6:
            return quad  # parallel neighbours: not a page
        s = ((q - p)[0] * -v[1] + v[0] * (q - p)[1]) / det
        corners.append(p + s * u)
    return np.array(corners, dtype=np.float32)


def order(points: np.ndarray) -> np.ndarray:
    """Four points as top-left, top-right, bottom-right, bottom-left."""
    total = points.sum(axis=1)
    diff = np.diff(points, axis=1).ravel()  # y - x
    ordered = [points[np.argmin(total)], points[np.argmin(diff)]]
    ordered += [points[np.argmax(total)], points[np.argmax(diff)]]
    return np.array(ordered, dtype=np.float32)


def warp(rgb: np.ndarray, corners: np.ndarray) -> np.ndarray:
    """The quad `corners` (as find_corners orders them) mapped flat onto a rectangle as
    wide and tall as the quad's longer opposite sides."""
    tl, tr, br, bl = corners
    width = round(max(np.linalg.norm(tr - tl), np.linalg.norm(br - bl)))
    height = round(max(np.linalg.norm(bl - tl), np.linalg.norm(br - tr)))
    target = np.array([[0, 0], [width - 1, 0], [width - 1, height - 1], [0, height - 1]])
    matrix = cv2.getPerspectiveTransform(corners, target.astype(np.float32))
    flat: np.ndarray = cv2.warpPerspective(
        rgb, matrix, (width, height), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE
    )
    return flat


def upright(image: np.ndarray, cancel: Cancel | None = None) -> tuple[np.ndarray, int]:
    """The page turned so its text reads upright, and the clockwise turn applied (0, 90,
    180 or 270; 0 when OSD is unsure). Needs Tesseract with tesseract-ocr-osd."""
    grey = image if image.ndim == 2 else cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
    turn, confidence = ocr.orientation(grey, cancel)
    # Below about 1.5, OSD's guesses on pages were wrong about as often as right.
    if turn not in TURNS or confidence < 1.5:
        return image, 0
    turned: np.ndarray = cv2.rotate(image, TURNS[turn])
    return turned, turn


def enhance(image: np.ndarray) -> np.ndarray:
    """Grey text page with an even white background and sharp black text: the light
    falloff is divided out (a closing wider than the strokes estimates the paper), then
    the contrast is stretched and unsharp-masked."""
    grey = image if image.ndim == 2 else cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
    side = max(15, (min(grey.shape[:2]) // 40) | 1)  # odd, wider than any text stroke
    paper = cv2.morphologyEx(
        grey, cv2.MORPH_CLOSE, cv2.getStructuringElement(cv2.MORPH_RECT, (side, side))
    )
    paper = cv2.GaussianBlur(paper, (0, 0), side / 4)
    even = cv2.divide(grey, paper, scale=255)  # paper -> 255, ink keeps its ratio to it
    # Stretch so the darkest 1 % is black: faint ink becomes legible, paper stays white.
    dark = float(np.percentile(even, 1))
    stretched = np.clip((even.astype(np.float32) - dark) * 255 / max(1.0, 255 - dark), 0, 255)
    soft = cv2.GaussianBlur(stretched, (0, 0), 1.0)
    sharp = cv2.addWeighted(stretched, 1.6, soft, -0.6, 0)
    out: np.ndarray = np.clip(sharp, 0, 255).astype(np.uint8)
    return out
