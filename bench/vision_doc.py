"""Document correction at 12 MP (seed 003 types 0 and 2, server/vision/correction.py): CPU
ms per image, wall ms and memory, on a rendered page warped onto a real photo
(tests/documents.py) saved as a q92 JPEG, as POST /v1/image/correct would receive it.

    python bench/vision_doc.py [--runs 5] [--smoke]    (one JSON line per case)

- `type0`: find the page's corners, warp it flat, turn it upright (Tesseract OSD), JPEG;
- `type2`: the same, then even out the light and write grey PNG (text enhancement).
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

KINDS = {"type0": 0, "type2": 2}
FEATURES = {"type0": "document correction, type 0 (crop + upright)",
            "type2": "document correction, type 2 (crop + upright + enhance)"}  # fmt: skip


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
    with tempfile.TemporaryDirectory() as tmp:
        photo = Path(tmp) / "page-on-photo.jpg"
        photo.write_bytes(jpeg(page_on_photo(size)[0], 92))
        for name in KINDS:
            print(json.dumps(fresh(case, name, str(photo), runs)), flush=True)


if __name__ == "__main__":
    main()
