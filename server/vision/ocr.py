"""OCR with Tesseract 5 (SPEC §9): lines with boxes and confidences, in reading order.

Photos and signs are read by rapidocr instead (vision/ocr_rapid.py): the request's
`engine` is `tesseract`, `rapidocr` or `auto` (the default: `choose` below).

Tesseract runs as its CLI (`tesseract page.pgm stdout tsv`), not through pytesseract or
tesserocr: pytesseract is a wrapper around the same CLI that goes through temp files and
cannot be told to stop, and tesserocr bundles its own libtesseract (34 MB) and still needs
Debian's language data. A child process is killed when the render times out, and a crash
in it cannot take the server down. Its pixels come from the delivery loaders
(vision/pixels.py), in the render pool.

No engine, no text: a missing binary or language data is 503 `ocr_unavailable`, never an
empty or made-up answer.
"""

from __future__ import annotations

import functools
import os
import subprocess
import tempfile
from dataclasses import dataclass
from typing import Any

import numpy as np

from server import inputs
from server.errors import InvalidParam, OcrUnavailable, RenderTimeout
from server.imagerefs import Ref
from server.imaging.inspect import probe
from server.imaging.vips import Cancel
from server.runtime import Runtime
from server.vision import pixels

BINARY = "tesseract"  # the engine; tests point it at a missing file (a seam we own)
# Longer sides are shrunk: Tesseract's LSTM reads 20-60 px text best, and a 12 MP photo
# at full size costs 3x the time for worse lines (docs/vision.md#ocr-and-documents).
MAX_SIDE = 3000
POLL_S = 0.2  # how often a running Tesseract checks whether its render was cancelled
# One OpenMP thread: renders already run side by side, one per render thread.
ENV = {**os.environ, "OMP_THREAD_LIMIT": "1"}


@dataclass(frozen=True, slots=True)
class Line:
    text: str
    confidence: float  # 0..1, the mean of its words'
    box: tuple[int, int, int, int]  # x, y, width, height

    def json(self, scale: float = 1.0) -> dict[str, Any]:
        x, y, w, h = (round(v / scale) for v in self.box)
        return {
            "text": self.text,
            "confidence": self.confidence,
            "box": {"x": x, "y": y, "width": w, "height": h},
        }


def tesseract(args: list[str], page: np.ndarray | None, cancel: Cancel | None) -> str:
    """The CLI's output; a failure is OcrUnavailable with its last message line."""
    code, out, err = _run(args, page, cancel)
    if code != 0:
        raise _failure(err)
    return out


def _failure(err: str) -> OcrUnavailable:
    last = err.strip().splitlines()[-1:] or ["no message"]
    return OcrUnavailable(f"the OCR engine failed: {last[0][:200]}")


def _run(args: list[str], page: np.ndarray | None, cancel: Cancel | None) -> tuple[int, str, str]:
    """Run the CLI on `page` (grey), given as `tesseract FILE stdout ARGS`; stop it when the
    render is cancelled (the pool's timeout). The page goes through a temporary file, not
    stdin: Popen.communicate() stops writing input after its first timeout (CPython 3.11),
    so a page Tesseract had not read within one poll hung it."""
    with tempfile.TemporaryDirectory(prefix="imgcdn-ocr-") as folder:
        command = [BINARY, *args]
        if page is not None:
            path = os.path.join(folder, "page.pgm")
            # PGM: nothing to compress, and Leptonica reads it directly.
            with open(path, "wb") as file:
                file.write(b"P5\n%d %d\n255\n" % (page.shape[1], page.shape[0]))
                file.write(np.ascontiguousarray(page, dtype=np.uint8).tobytes())
            command = [BINARY, path, "stdout", *args]
        try:
            # A fixed program and arguments (language checked against the installed list).
            child = subprocess.Popen(  # noqa: S603
                command,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                env=ENV,
            )
        except OSError:
            raise OcrUnavailable("the OCR engine (tesseract) is not installed") from None
        with child:  # closes its pipes however this ends
            while True:
                try:
                    out, err = child.communicate(timeout=POLL_S)
                    break
                except subprocess.TimeoutExpired:
                    if cancel is not None and cancel.cancelled:
                        child.kill()
                        raise RenderTimeout("OCR exceeded the time limit") from None
    return child.returncode, out.decode(errors="replace"), err.decode(errors="replace")


@functools.lru_cache(maxsize=4)
def _languages(binary: str) -> frozenset[str]:
    del binary  # the cache key: a different engine may have other data
    listed = tesseract(["--list-langs"], None, None).splitlines()
    return frozenset(line.strip() for line in listed[1:] if line.strip())


def languages() -> frozenset[str]:
    """The installed language data (`eng`, `osd`, ...); cached per binary."""
    return _languages(BINARY)


def check_language(language: str) -> None:
    have = languages() - {"osd"}
    if not have:
        raise OcrUnavailable("the OCR engine has no language data installed")
    missing = [part for part in language.split("+") if part not in have]
    if missing:
        raise InvalidParam(
            "language", f"language {missing[0]!r} is not installed; have: {', '.join(sorted(have))}"
        )


def read_lines(grey: np.ndarray, language: str, cancel: Cancel | None, psm: int = 3) -> list[Line]:
    """Tesseract's lines of `grey` (H x W uint8), in its reading order."""
    check_language(language)
    tsv = tesseract(["-l", language, "--psm", str(psm), "--oem", "1", "tsv"], grey, cancel)
    return parse_tsv(tsv)


def parse_tsv(tsv: str) -> list[Line]:
    """Words grouped by (page, block, paragraph, line), in the order Tesseract printed them."""
    groups: dict[tuple[str, ...], list[tuple[str, float, int, int, int, int]]] = {}
    for row in tsv.splitlines()[1:]:
        cols = row.split("\t")
        if len(cols) != 12 or cols[0] != "5" or not cols[11].strip():
            continue  # level 5 rows are words; the others are their containers
        left, top, width, height = (int(v) for v in cols[6:10])
        word = (cols[11].strip(), float(cols[10]), left, top, width, height)
        groups.setdefault(tuple(cols[1:5]), []).append(word)
    lines = []
    for words in groups.values():
        x0 = min(w[2] for w in words)
        y0 = min(w[3] for w in words)
        x1 = max(w[2] + w[4] for w in words)
        y1 = max(w[3] + w[5] for w in words)
        confidence = sum(max(0.0, w[1]) for w in words) / len(words) / 100
        text = " ".join(w[0] for w in words)
        lines.append(Line(text, round(min(1.0, confidence), 3), (x0, y0, x1 - x0, y1 - y0)))
    return lines


def orientation(grey: np.ndarray, cancel: Cancel | None) -> tuple[int, float]:
    """Tesseract OSD: the clockwise turn (0, 90, 180, 270) that makes the page upright,
    and its confidence (about 2+ is usable; 0 when OSD found too few characters)."""
    if "osd" not in languages():
        raise OcrUnavailable("the OCR engine has no orientation data (tesseract-ocr-osd)")
    code, out, err = _run(["--psm", "0"], grey, cancel)
    if code != 0 and "Too few characters" in err:
        return 0, 0.0  # nothing to judge by: leave the page as it is
    if code != 0:
        raise _failure(err)
    fields = dict(line.split(":", 1) for line in out.splitlines() if ":" in line)
    turn = int(fields.get("Rotate", "0").strip())
    return turn, float(fields.get("Orientation confidence", "0").strip())


# `auto` picks Tesseract when at least this share of the image is paper: light and grey
# (scans, screenshots, rendered pages); photos and signs go to rapidocr. Measured: rendered
# pages 0.9+, a page photographed on a table 0.3, photos 0.0-0.2 (docs/vision.md).
PAPER_SHARE = 0.5


def paper_share(rgb: np.ndarray) -> float:
    """The share of pixels that are light grey paper (luma >= 160, chroma <= 30), on a
    sample of about 256 x 256 of them."""
    step = max(1, max(rgb.shape[:2]) // 256)
    sample = rgb[::step, ::step].astype(np.int32)
    luma = sample @ np.array([299, 587, 114], dtype=np.int32) // 1000
    chroma = sample.max(axis=2) - sample.min(axis=2)
    return float(np.mean((luma >= 160) & (chroma <= 30)))


def choose(engine: str, language: str, rgb: np.ndarray) -> str:
    """The engine `auto` stands for: Tesseract for a language only it has data for, and
    for paper; rapidocr for photos."""
    from server.vision import ocr_rapid

    if engine != "auto":
        return engine
    if language not in ocr_rapid.LANGUAGES or paper_share(rgb) >= PAPER_SHARE:
        return "tesseract"
    return "rapidocr"


def check_engine(engine: str, language: str) -> None:
    from server.vision import ocr_rapid

    if engine == "rapidocr" and language not in ocr_rapid.LANGUAGES:
        raise InvalidParam(
            "language",
            f"the rapidocr engine reads {', '.join(sorted(ocr_rapid.LANGUAGES))} only; "
            "use engine tesseract for other languages",
        )
    if engine != "rapidocr":
        check_language(language)  # before decoding: a wrong field costs nothing


async def ocr(
    rt: Runtime, ref: Ref, prefix: str, language: str, engine: str = "auto"
) -> dict[str, Any]:
    """SPEC §9: {text, lines, language, engine}; boxes in the upright source's pixels."""
    from server.vision import ocr_rapid

    source = await inputs.load(rt, ref, prefix)
    limits, options = rt.source_limits, rt.render_options

    def job(cancel: Cancel) -> dict[str, Any]:
        check_engine(engine, language)
        side = ocr_rapid.MAX_SIDE if engine == "rapidocr" else MAX_SIDE
        page = pixels.load(source, probe(source, limits), side, options, cancel)
        chosen = choose(engine, language, page.rgb)
        if chosen == "tesseract":
            lines, scale = read_lines(page.grey, language, cancel), page.scale
        else:
            rgb, scale = _shrink(page.rgb, page.scale, ocr_rapid.MAX_SIDE)
            lines = ocr_rapid.read_lines(rgb, cancel)
        return {
            "text": "\n".join(line.text for line in lines),
            "lines": [line.json(scale) for line in lines],
            "language": language,
            "engine": chosen,
        }

    return await rt.pool.run(job)


def _shrink(rgb: np.ndarray, scale: float, side: int) -> tuple[np.ndarray, float]:
    """`rgb` with its longer side at most `side` (auto decoded at Tesseract's size)."""
    longest = max(rgb.shape[:2])
    if longest <= side:
        return rgb, scale
    import cv2  # with numpy already: the OpenCV wheel rapidocr itself needs

    factor = side / longest
    size = (round(rgb.shape[1] * factor), round(rgb.shape[0] * factor))
    return cv2.resize(rgb, size, interpolation=cv2.INTER_AREA), scale * size[0] / rgb.shape[1]
