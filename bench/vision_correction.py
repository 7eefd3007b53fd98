"""Seed 003's visual correction (SPEC §10) at 12 MP: CPU ms and peak RSS per type, in
process; and one image's end-to-end latency over HTTP, sync=1 against sync=0 + polling.

    python bench/vision_correction.py    (one JSON line per case; median of RUNS)

In process, each type in a fresh process so its peak RSS is its own: what the render pool
runs for one task (routes/correction.py `run`: probe, limits, decode, correct, encode) on
a 4000 x 3000 JPEG. Types 0-2 get a rendered page warped onto a real photo
(tests/documents.py), types 3-4 the product photo (tests/images/vision/product.jpg)
upscaled to the same size. Over HTTP: `imgcdn serve --workers 2` (embedded job engine),
the page photo as image_file, type 2 and return_type 1; `sync` is POST -> answer, `async`
is POST -> the GET saying state 1 (polled every 20 ms). One warm-up run each first.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2
import httpx2 as httpx
import pyvips

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from documents import jpeg, page_on_photo
from run import imgcdn
from vision_ocr import cpu_s, peak_rss_mb

from server.imaging.inspect import SourceLimits, probe
from server.imaging.options import RenderOptions
from server.imaging.vips import Cancel, configure
from server.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
RUNS = 3
SIZE = (4000, 3000)
PATH = "/api/tasks/visual/correction"


def run_type(kind: int, folder: Path) -> None:
    from server.vision.correction import check_limits, correct  # as routes/correction.run

    configure()
    s = Settings()
    options = RenderOptions(s.shrink_on_load, s.jpeg_preset, s.avif_effort, 100_000, 10**9)
    limits = SourceLimits(s.max_source_bytes, 10**9, s.max_frames)
    data = (folder / ("page.jpg" if kind <= 2 else "product.jpg")).read_bytes()
    cpu, wall, size = [], [], 0
    for _ in range(RUNS):
        c0, w0 = cpu_s(), time.perf_counter()
        info = probe(data, limits)
        check_limits(info, "image_file")
        done = correct(data, info, kind, options, Cancel())
        cpu.append(cpu_s() - c0)
        wall.append(time.perf_counter() - w0)
        size = len(done.body)
    line = {
        "case": f"type_{kind}",
        "megapixels": SIZE[0] * SIZE[1] / 1e6,
        "cpu_ms": round(statistics.median(cpu) * 1000),
        "wall_ms": round(statistics.median(wall) * 1000),
        "peak_rss_mb": peak_rss_mb(),
        "out": f"{done.width}x{done.height} {done.fmt} {size} B",
    }
    print(json.dumps(line), flush=True)


def over_http(folder: Path) -> None:
    page = (folder / "page.jpg").read_bytes()
    with imgcdn(workers=2) as server, httpx.Client(base_url=server.base, timeout=120) as http:
        key = {"X-API-KEY": (server.data / "admin-token").read_text().strip()}
        files = {"image_file": ("page.jpg", page, "image/jpeg")}

        def sync() -> None:
            r = http.post(PATH, data={"sync": "1", "type": "2"}, files=files, headers=key)
            assert r.status_code == 200 and r.json()["data"]["state"] == 1, r.text

        def async_() -> None:
            r = http.post(PATH, data={"sync": "0", "type": "2"}, files=files, headers=key)
            assert r.status_code == 200, r.text
            task = f"{PATH}/{r.json()['data']['task_id']}"
            while (state := http.get(task, headers=key).json()["data"]["state"]) != 1:
                assert state > 1, state
                time.sleep(0.02)  # the client's poll interval, part of what is measured

        for name, work in (("http_sync", sync), ("http_async", async_)):
            work()  # warm-up: the worker imports OpenCV and the models once
            times = []
            for _ in range(RUNS):
                w0 = time.perf_counter()
                work()
                times.append(time.perf_counter() - w0)
            line = {
                "case": name,
                "megapixels": SIZE[0] * SIZE[1] / 1e6,
                "type": 2,
                "latency_ms": round(statistics.median(times) * 1000),
            }
            print(json.dumps(line), flush=True)


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        photo, _ = page_on_photo(SIZE)
        (folder / "page.jpg").write_bytes(jpeg(photo, 92))
        product = pyvips.Image.new_from_file(str(ROOT / "tests/images/vision/product.jpg"))
        big = product.resize(SIZE[0] / product.width, vscale=SIZE[1] / product.height)
        (folder / "product.jpg").write_bytes(big.write_to_buffer(".jpg[Q=92]"))
        assert cv2.imdecode is not None  # OpenCV present: the cases need it
        for kind in range(5):
            command = [sys.executable, __file__, "--type", str(kind), tmp]
            subprocess.run(command, check=True)  # noqa: S603  # this very script
        over_http(folder)


if __name__ == "__main__":
    if sys.argv[1:2] == ["--type"]:
        run_type(int(sys.argv[2]), Path(sys.argv[3]))
    else:
        main()
