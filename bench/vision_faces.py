"""Faces at 12 MP (issue #13): face detection CPU ms, face blur CPU ms, and a cold g=face
render against g=smart on the same photo. Prints one JSON line per measure.

    .venv/bin/python bench/vision_faces.py [--runs 5]

The photo is tests/images/vision/group.jpg (seven faces) scaled up to 4000x3000 and saved
as a q85 JPEG, so shrink-on-load works as it does on a camera photo; the no-face case is
tests/images/photo.jpg (a dragonfly) scaled the same way. CPU is this process's
user+system time (time.process_time), wall is perf_counter; both medians over --runs, each
run cold (no detection cache). Peak RSS is the process's maximum after all runs.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyvips

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from server.imaging import pipeline  # noqa: E402  # after the path setup above
from server.imaging.inspect import SourceLimits, probe  # noqa: E402
from server.imaging.options import RenderOptions  # noqa: E402
from server.imaging.vips import Cancel  # noqa: E402
from server.spec import Limits, TransformSpec, parse_params  # noqa: E402
from server.vision import faces  # noqa: E402


def measure(name: str, run: Callable[[int], object], runs: int, **extra: object) -> None:
    cpu, wall = [], []
    for index in range(runs):
        c, w = time.process_time(), time.perf_counter()
        run(index)
        cpu.append((time.process_time() - c) * 1000)
        wall.append((time.perf_counter() - w) * 1000)
    line = {
        "measure": name,
        "cpu_ms": round(statistics.median(cpu), 1),
        "wall_ms": round(statistics.median(wall), 1),
        "runs": runs,
        **extra,
    }
    print(json.dumps(line), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    group = ROOT / "tests/images/vision/group.jpg"
    with tempfile.TemporaryDirectory() as tmp:
        photo = Path(tmp) / "group-12mp.jpg"
        pyvips.Image.new_from_file(str(group)).resize(2.5).write_to_file(str(photo), Q=85)
        data = photo.read_bytes()
        info = probe(data, SourceLimits(max_bytes=10**9, max_pixels=10**9, max_frames=1))
        options = RenderOptions()
        faces.detect(pyvips.Image.black(64, 64, bands=3))  # load the model outside the timing

        def detect(index: int) -> object:
            # What g=face and blur_faces pay at most: decode shrunk on load, detect.
            image = pyvips.Image.thumbnail_buffer(data, faces.WORK)
            found = faces.detect(image)
            assert len(found) == 7, found
            return found

        measure("face_detection_12mp", detect, args.runs, megapixels=12, faces=7)

        def render(query: str) -> Callable[[int], object]:
            def run(index: int) -> object:
                spec = parse_params(dict(p.split("=") for p in query.split("&")), Limits())
                key = ("bench", query, index, time.perf_counter())  # cold: a new key each run
                return pipeline.render(data, info, spec, "jpeg", options, Cancel(), source_key=key)

            return run

        plain = Path(tmp) / "dragonfly-12mp.jpg"
        photo_jpg = ROOT / "tests/images/photo.jpg"
        pyvips.Image.new_from_file(str(photo_jpg)).resize(5).write_to_file(str(plain), Q=85)
        portrait = Path(tmp) / "astronaut-12mp.jpg"
        astronaut = pyvips.Image.new_from_file(str(ROOT / "tests/images/vision/astronaut.png"))
        astronaut.resize(3464 / 512).write_to_file(str(portrait), Q=85)
        cases = [("no_faces", portrait.with_name("dragonfly-12mp.jpg")), ("portrait", portrait)]
        for case, path in cases:
            body = path.read_bytes()
            case_info = probe(body, SourceLimits(max_bytes=10**9, max_pixels=10**9, max_frames=1))
            for gravity in ("smart", "face"):
                query = f"w=800&h=400&g={gravity}"
                spec = parse_params(dict(p.split("=") for p in query.split("&")), Limits())

                def run(
                    index: int, spec: TransformSpec = spec, body: bytes = body, i: Any = case_info
                ) -> object:
                    key = ("bench", time.perf_counter())
                    return pipeline.render(body, i, spec, "jpeg", options, Cancel(), source_key=key)

                measure(f"{case}_g_{gravity}_12mp", run, args.runs, query=query)

        for name, query in (
            ("group_g_smart_12mp", "w=800&h=400&g=smart"),
            ("group_g_face_12mp", "w=800&h=400&g=face"),
            ("group_blur_faces_12mp_w1600", "w=1600&blur_faces=4"),
            ("group_plain_12mp_w1600", "w=1600"),
        ):
            measure(name, render(query), args.runs, query=query)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"measure": "peak_rss_mb", "value": round(peak, 1)}), flush=True)


if __name__ == "__main__":
    main()
