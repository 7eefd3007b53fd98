"""Seed 003's correction types at 12 MP (server/vision/correction.py, what the render pool
runs for one task): CPU ms per image, wall ms and memory. Types 0-2 get a rendered page
warped onto a real photo (tests/documents.py), types 3-4 the product photo
(tests/images/vision/product.jpg) scaled to the same size, each saved as a q92 JPEG.

    python bench/vision_doc.py [--runs 5] [--smoke]    (one JSON line per case)

- `type0`: find the page's corners, warp it flat, turn it upright (Tesseract OSD), JPEG;
- `type1`: even out the light and write grey PNG (text enhancement) of the whole photo;
- `type2`: type 0, then type 1;
- `type3`: crop to the product's box (its mask); `type4`: the same with the mask as alpha.
The HTTP side (sync against async + polling) is bench/vision_correction.py.
Each case in a fresh process (bench/vision_bg.py's `fresh`, same keys). There is no model
to load: OpenCV is classical here and Tesseract OSD is a child process per image, so its
cost is in cpu_ms (this process's CPU and its children's) and model_load_ms is null.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "tests"), str(ROOT / "bench")]

from vision_bg import fresh, rss_mb, summary  # noqa: E402  # after the path setup above

KINDS = {"type0": 0, "type1": 1, "type2": 2, "type3": 3, "type4": 4}
FEATURES = {"type0": "correction type 0 (document crop + upright)",
            "type1": "correction type 1 (text enhancement)",
            "type2": "correction type 2 (document crop + upright + enhance)",
            "type3": "correction type 3 (product crop)",
            "type4": "correction type 4 (product crop + background removal)"}  # fmt: skip


def cpu_with_children() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def case(name: str, path: str, runs: int, out: Any) -> None:
    w0 = time.perf_counter()
    from server.imaging.inspect import SourceLimits, probe
    from server.imaging.options import RenderOptions
    from server.imaging.vips import Cancel, configure
    from server.vision import correction

    configure()
    imported, start = time.perf_counter(), rss_mb()
    data = Path(path).read_bytes()
    info = probe(data, SourceLimits(20 << 20, 10**9, 1))
    options = RenderOptions(max_side=8192, max_pixels=40_000_000)
    # Tesseract's CPU lands in RUSAGE_CHILDREN, which process_time does not see: time the
    # pair by hand around summary's own timing (median of the same runs).
    spent: list[float] = []

    def once() -> object:
        c0 = cpu_with_children()
        done = correction.correct(data, info, KINDS[name], options, Cancel())
        spent.append((cpu_with_children() - c0) * 1000)
        return done

    line = summary(once, runs)
    timed = sorted(spent[1:])  # the first is summary's warm-up
    line["cpu_ms"] = round(timed[len(timed) // 2])
    line["cpu_p90_ms"] = round(timed[min(len(timed) - 1, round(0.9 * (len(timed) - 1)))])
    out.put({"case": name, "feature": FEATURES[name],
             "megapixels": round(info.width * info.height / 1e6, 1), "model_load_ms": None,
             "import_ms": round((imported - w0) * 1000), "rss_start_mb": start,
             "rss_model_mb": start, **line})  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--smoke", action="store_true", help="an 800x600 photo, one run")
    a = ap.parse_args()
    from documents import jpeg, page_on_photo

    runs, size = (1, (800, 600)) if a.smoke else (a.runs, (4000, 3000))
    import pyvips

    with tempfile.TemporaryDirectory() as tmp:
        page = Path(tmp) / "page-on-photo.jpg"
        page.write_bytes(jpeg(page_on_photo(size)[0], 92))
        product = pyvips.Image.new_from_file(str(ROOT / "tests/images/vision/product.jpg"))
        big = product.resize(size[0] / product.width, vscale=size[1] / product.height)
        (shot := Path(tmp) / "product.jpg").write_bytes(big.write_to_buffer(".jpg[Q=92]"))
        for name, kind in KINDS.items():
            photo = page if kind <= 2 else shot
            print(json.dumps(fresh(case, name, str(photo), runs)), flush=True)


if __name__ == "__main__":
    main()
