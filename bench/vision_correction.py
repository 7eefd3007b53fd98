"""Seed 003's visual correction (SPEC §10) over HTTP: one 12 MP page's end-to-end latency,
sync=1 against sync=0 + polling. (The in-process cost per type is bench/vision_doc.py.)

    python bench/vision_correction.py [--smoke]    (one JSON line per case; median of RUNS)

`imgcdn serve --workers 2` (embedded job engine), the page photo as image_file, type 2 and
return_type 1; `sync` is POST -> answer, `async` is POST -> the GET saying state 1 (polled
every 20 ms). One warm-up run each first.
"""

from __future__ import annotations

import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx2 as httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from documents import jpeg, page_on_photo
from run import imgcdn

ROOT = Path(__file__).resolve().parents[1]
RUNS = 3
SIZE = (4000, 3000)
PATH = "/api/tasks/visual/correction"


def over_http(folder: Path, size: tuple[int, int], runs: int) -> None:
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
            for _ in range(runs):
                w0 = time.perf_counter()
                work()
                times.append(time.perf_counter() - w0)
            line = {
                "case": name,
                "megapixels": size[0] * size[1] / 1e6,
                "type": 2,
                "latency_ms": round(statistics.median(times) * 1000),
            }
            print(json.dumps(line), flush=True)


def main() -> None:
    smoke = sys.argv[1:] == ["--smoke"]
    size = (800, 600) if smoke else SIZE
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        photo, _ = page_on_photo(size)
        (folder / "page.jpg").write_bytes(jpeg(photo, 92))
        over_http(folder, size, 1 if smoke else RUNS)


if __name__ == "__main__":
    main()
