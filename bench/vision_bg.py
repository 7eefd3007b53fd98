"""Background removal and moderation at 12 MP: CPU ms per image, model load and the
process's memory, on the engine's own path (imaging/chain.py render_chain, as the processing
API runs it; moderation.moderate, as POST /v1/image/moderate runs it).

    python bench/vision_bg.py [CORPUS_DIR] [--runs 5] [--smoke]    (one JSON line per case)

Each case runs in a fresh (spawned) process, so its memory is its own; the baseline case is
the same 12 MP decode + PNG encode without the vision step. Per case:
- model_load_ms: wall time to import the feature's modules and build its model (once per
  worker in the server), before any image;
- rss_start_mb / rss_model_mb: VmRSS after importing the engine, and after that load;
- cpu_ms / cpu_p90_ms / wall_ms: median and p90 of --runs images after one warm-up image
  (first_ms), so they are the steady per-image cost;
- peak_rss_mb: the process's VmHWM (fresh at exec) after all runs.
--smoke: a 400 px image and one run, to check the script works (tests/test_bench_vision.py).
vision_doc.py reuses `fresh`, `summary` and `rss_mb` from here.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import multiprocessing
import queue as queue_module
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyvips

ROOT = Path(__file__).resolve().parent.parent
VISION = ROOT / "tests" / "images" / "vision"
CASES = ("baseline", "segmentation", "classical", "moderate")


def rss_mb(key: str = "VmRSS") -> float:
    """A field of /proc/self/status in MB (VmRSS now, VmHWM the peak since exec)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return round(int(line.split()[1]) / 1024, 1)
    return 0.0


def summary(once: Callable[[], object], runs: int) -> dict[str, Any]:
    """One warm-up call, then `runs` timed ones: CPU median and p90, wall median."""
    cpu, wall = [], []
    w0 = time.perf_counter()
    once()
    first = (time.perf_counter() - w0) * 1000
    for _ in range(runs):
        c0, w0 = time.process_time(), time.perf_counter()
        once()
        cpu.append((time.process_time() - c0) * 1000)
        wall.append((time.perf_counter() - w0) * 1000)
    p90 = sorted(cpu)[min(len(cpu) - 1, round(0.9 * (len(cpu) - 1)))]
    return {"cpu_ms": round(statistics.median(cpu)), "cpu_p90_ms": round(p90),
            "wall_ms": round(statistics.median(wall)), "first_ms": round(first), "runs": runs,
            "peak_rss_mb": rss_mb("VmHWM")}  # fmt: skip


def fresh(target: Callable[..., None], *args: Any) -> dict[str, Any]:
    """Run target(*args, queue) in a new spawned interpreter; the one line it puts."""
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    child = ctx.Process(target=target, args=(*args, queue))
    child.start()
    deadline = time.monotonic() + 900
    while time.monotonic() < deadline:
        with contextlib.suppress(queue_module.Empty):
            line: dict[str, Any] = queue.get(timeout=1)
            child.join()
            return line
        if not child.is_alive():  # it died before answering (its traceback is on stderr)
            raise RuntimeError(f"{target.__name__}{args[:1]} exited {child.exitcode}")
    child.kill()
    raise RuntimeError(f"{target.__name__}{args[:1]} took over 900 s")


def case(name: str, data: bytes, runs: int, out: Any) -> None:
    w0 = time.perf_counter()
    from server.imaging.chain import render_chain
    from server.imaging.inspect import SourceLimits, probe
    from server.imaging.options import RenderOptions
    from server.imaging.vips import Cancel
    from server.plan import Plan, Stage
    from server.spec import TransformSpec

    base, start = time.perf_counter(), rss_mb()  # the engine alone, before the feature
    if name in ("segmentation", "classical"):
        from server.vision import background, models

        if name == "segmentation":  # the classical method has no model, only OpenCV
            models.load("selfie_segmentation", background._selfie)
    elif name == "moderate":
        from server.vision import models, moderation

        models.load("open_nsfw", moderation._classifier)
    loaded = time.perf_counter()
    model_rss = rss_mb()
    limits = SourceLimits(50 << 20, 100_000_000, 256)
    options = RenderOptions(max_side=8192, max_pixels=40_000_000)
    info = probe(data, limits)
    steps = (
        () if name == "baseline" else (Stage("background_remove", TransformSpec(bg_remove=True)),)
    )
    plan = Plan(stages=steps, fmt="png")

    def once() -> object:
        if name == "moderate":
            return moderation.moderate(data, limits, options, Cancel())
        return render_chain(data, info, plan, "png", options, Cancel(), {})

    feature = {"baseline": "baseline: decode + PNG encode, no vision",
               "segmentation": "background removal, people (selfie segmentation)",
               "classical": "background removal, product (classical)",
               "moderate": "moderation"}[name]  # fmt: skip
    megapixels = round(info.width * info.height / 1e6, 1)
    out.put({"case": name, "feature": feature, "megapixels": megapixels,
             "model_load_ms": round((loaded - base) * 1000), "import_ms": round((base - w0) * 1000),
             "rss_start_mb": start, "rss_model_mb": model_rss, **summary(once, runs)})  # fmt: skip


def sized(path: Path, width: int, quality: int = 92) -> bytes:
    image = pyvips.Image.new_from_file(str(path))
    return bytes(image.resize(width / image.width).jpegsave_buffer(Q=quality))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("corpus", nargs="?", type=Path, default=ROOT / "bench" / "corpus")
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--smoke", action="store_true", help="400 px images, one run")
    a = ap.parse_args()
    runs, width = (1, 400) if a.smoke else (a.runs, 4000)
    # a dragonfly on leaves (busy border: segmentation); the product on a plain card
    photo = a.corpus / "photo-12mp.jpg"
    photo_data = sized(photo, width) if a.smoke else photo.read_bytes()
    product = sized(VISION / "product.jpg", width)
    inputs = {"classical": product}
    for name in CASES:
        print(json.dumps(fresh(case, name, inputs.get(name, photo_data), runs)), flush=True)


if __name__ == "__main__":
    main()
