"""OCR and document correction at 12 MP: CPU ms (this process and its Tesseract children)
and peak RSS, on a rendered page warped onto a real photo (tests/documents.py), as JPEG.

    python bench/vision_ocr.py    (one JSON line per case; median of RUNS)

Cases, each in a fresh process so its peak RSS is its own:
- `ocr_photo`: what POST /v1/image/ocr does after reading the body (decode shrunk to
  ocr.MAX_SIDE, Tesseract) on the photo of the page; its CER shows why pages get corrected;
- `ocr_scan`: the same on a flat 12 MP page (a scan);
- `corners`: decode at full size, find the page's corners;
- `correct`: corners + warp + upright (OSD) + enhance; `correct_ocr`: then read it;
- `rapid_photo`, `rapid_scan`: the same two with engine=rapidocr (decode shrunk to
  ocr_rapid.MAX_SIDE, rapidocr), with `model_load_ms`: building the engine and opening its
  two ONNX models, once per worker;
- `ocr_sign`, `rapid_sign`: a sign photographed at an angle (tests/test_vision_ocr_rapid.py)
  at 12 MP, read by each engine; `paper_share` says what engine=auto picks for it.
`peak_rss_mb` is the case's process (Python, libvips, OpenCV, the pixels);
`tesseract_peak_rss_mb` is Tesseract's own, measured from a small parent (a child's
ru_maxrss counts its parent's memory up to exec).
"""

from __future__ import annotations

import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from documents import LINES, cer, jpeg, page_on_photo, rendered_text
from test_vision_ocr_rapid import SIGN, sign_photo

from server.imaging.inspect import SourceLimits, probe
from server.imaging.options import RenderOptions
from server.imaging.vips import Cancel, configure
from server.settings import Settings
from server.vision import document, ocr, ocr_rapid, pixels

RUNS = 3
SIZE = (4000, 3000)
TEXT = "\n".join(LINES)
CASES = (
    "ocr_photo",
    "ocr_scan",
    "corners",
    "correct",
    "correct_ocr",
    "rapid_photo",
    "rapid_scan",
    "ocr_sign",
    "rapid_sign",
)
FILES = {"ocr_scan": "scan.jpg", "rapid_scan": "scan.jpg", "ocr_sign": "sign.jpg"}


def cpu_s() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def peak_rss_mb() -> int:
    """This process's VmHWM: unlike ru_maxrss, it starts afresh at exec (ru_maxrss keeps
    the parent's peak when the child was spawned by vfork)."""
    status = Path("/proc/self/status").read_text()
    kb = next(line.split()[1] for line in status.splitlines() if line.startswith("VmHWM:"))
    return round(int(kb) / 1024)


def measure(name: str, work: Callable[[], str], truth: str = TEXT) -> dict[str, Any]:
    cpu, wall, text = [], [], ""
    for _ in range(RUNS):
        c0, w0 = cpu_s(), time.perf_counter()
        text = work()
        cpu.append(cpu_s() - c0)
        wall.append(time.perf_counter() - w0)
    line: dict[str, Any] = {
        "case": name,
        "megapixels": SIZE[0] * SIZE[1] / 1e6,
        "cpu_ms": round(statistics.median(cpu) * 1000),
        "wall_ms": round(statistics.median(wall) * 1000),
        "peak_rss_mb": peak_rss_mb(),
    }
    if name.startswith(("ocr", "rapid")) or name == "correct_ocr":
        line["cer"] = round(cer(truth, text), 4)  # 1.0 when nothing was read
    return line


def run_case(name: str, folder: Path) -> None:
    configure()
    s = Settings()
    options = RenderOptions(s.shrink_on_load, s.jpeg_preset, s.avif_effort, 100_000, 10**9)
    limits = SourceLimits(s.max_source_bytes, 10**9, s.max_frames)
    data = (folder / FILES.get(name, "sign.jpg" if "sign" in name else "photo.jpg")).read_bytes()
    info = probe(data, limits)

    def read(grey: Any) -> str:
        return "\n".join(line.text for line in ocr.read_lines(grey, "eng", None))

    def corrected() -> Any:
        rgb = pixels.load(data, info, 100_000, options, Cancel()).rgb
        corners = document.find_corners(rgb)
        assert corners is not None
        page, _ = document.upright(document.warp(rgb, corners))
        return document.enhance(page)

    def shrunk() -> Any:
        return pixels.load(data, info, ocr.MAX_SIDE, options, Cancel()).grey

    def rapid() -> str:
        rgb = pixels.load(data, info, ocr_rapid.MAX_SIDE, options, Cancel()).rgb
        return "\n".join(line.text for line in ocr_rapid.read_lines(rgb, None))

    works: dict[str, Callable[[], str]] = {
        "ocr_photo": lambda: read(shrunk()),
        "ocr_scan": lambda: read(shrunk()),
        "corners": lambda: str(
            document.find_corners(pixels.load(data, info, 100_000, options, Cancel()).rgb)
            is not None
        )[:0],
        "correct": lambda: str(corrected().shape)[:0],
        "correct_ocr": lambda: read(corrected()),
        "rapid_photo": rapid,
        "rapid_scan": rapid,
        "ocr_sign": lambda: read(shrunk()),
        "rapid_sign": rapid,
    }
    load_ms = None
    if name.startswith("rapid"):
        t0 = time.perf_counter()
        engine = ocr_rapid.engine()
        engine._load_det_model()  # rapidocr opens its models on first use: open them now
        engine._load_rec_model()
        load_ms = round((time.perf_counter() - t0) * 1000)
    line = measure(name, works[name], "\n".join(SIGN) if "sign" in name else TEXT)
    if load_ms is not None:
        line["model_load_ms"] = load_ms
    if "sign" in name:
        rgb = pixels.load(data, info, ocr.MAX_SIDE, options, Cancel()).rgb
        line["paper_share"] = round(ocr.paper_share(rgb), 3)
    feed = shrunk() if name.startswith("ocr") else corrected() if name == "correct_ocr" else None
    if feed is not None:
        pgm = folder / "feed.pgm"
        cv2.imwrite(str(pgm), feed)
        line["tesseract_peak_rss_mb"] = tesseract_rss(pgm)
    print(json.dumps(line), flush=True)


def tesseract_rss(pgm: Path) -> int:
    probe_code = (
        "import resource, subprocess, sys\n"
        "command = ['tesseract', sys.argv[1], 'stdout', 'tsv']\n"
        "subprocess.run(command, capture_output=True, check=True)\n"
        "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)\n"
    )
    out = subprocess.run(  # noqa: S603  # this interpreter, a fixed script
        [sys.executable, "-c", probe_code, str(pgm)], capture_output=True, check=True
    )
    return round(int(out.stdout) / 1024)


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        photo, _ = page_on_photo(SIZE)
        (folder / "photo.jpg").write_bytes(jpeg(photo, 92))
        page = cv2.resize(
            rendered_text(dpi=300), None, fx=3.2, fy=3.2, interpolation=cv2.INTER_CUBIC
        )
        scan = np.full((SIZE[1], SIZE[0]), 255, np.uint8)
        scan[: min(page.shape[0], SIZE[1]), : min(page.shape[1], SIZE[0])] = page[
            : SIZE[1], : SIZE[0]
        ]
        (folder / "scan.jpg").write_bytes(jpeg(cv2.cvtColor(scan, cv2.COLOR_GRAY2RGB), 92))
        (folder / "sign.jpg").write_bytes(jpeg(sign_photo(SIZE), 92))
        for name in CASES:
            command = [sys.executable, __file__, "--case", name, tmp]
            subprocess.run(command, check=True)  # noqa: S603  # this very script


if __name__ == "__main__":
    if sys.argv[1:2] == ["--case"]:
        run_case(sys.argv[2], Path(sys.argv[3]))
    else:
        main()
