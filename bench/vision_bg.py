"""Background removal and moderation at 12 MP: CPU ms per image and the process's peak RSS,
on the engine's own path (imaging/chain.py render_chain, as the processing API runs it).

    python bench/vision_bg.py [corpus dir]    (one JSON line per case)

Each case runs in a fresh process, so its peak RSS is its own (the baseline case: the same
12 MP decode + encode without the vision step). CPU ms is the median of RUNS after a warm-up
(the warm-up pays the model load, reported as first_ms).
"""

from __future__ import annotations

import json
import multiprocessing
import resource
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import pyvips

CORPUS = Path(sys.argv[1] if len(sys.argv) > 1 else "../shared/corpus")
VISION = Path(__file__).parent.parent / "tests" / "images" / "vision"
RUNS = 3


def product_12mp() -> bytes:
    """The product test photo (plain card) scaled to 4000 px wide: a 12 MP product shot."""
    image = pyvips.Image.new_from_file(str(VISION / "product.jpg"))
    return bytes(image.resize(4000 / image.width).jpegsave_buffer(Q=92))


def case(name: str, data: bytes, out: Any) -> None:
    from server.imaging.chain import render_chain
    from server.imaging.inspect import SourceLimits, probe
    from server.imaging.options import RenderOptions
    from server.imaging.vips import Cancel
    from server.plan import Plan, Stage
    from server.spec import TransformSpec
    from server.vision import moderation

    limits = SourceLimits(50 << 20, 100_000_000, 256)
    options = RenderOptions(max_side=8192, max_pixels=40_000_000)
    info = probe(data, limits)
    steps = (
        () if name == "baseline" else (Stage("background_remove", TransformSpec(bg_remove=True)),)
    )
    plan = Plan(stages=steps, fmt="png")

    def once() -> float:
        cpu = time.process_time()
        if name == "moderate":
            moderation.moderate(data, limits, options, Cancel())
        else:
            render_chain(data, info, plan, "png", options, Cancel(), {})
        return (time.process_time() - cpu) * 1000

    first = once()
    took = [once() for _ in range(RUNS)]
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    cpu_ms = round(statistics.median(took))
    out.put({"case": name, "pixels": info.width * info.height, "cpu_ms": cpu_ms,
             "first_ms": round(first), "peak_rss_mb": round(rss)})  # fmt: skip


def main() -> None:
    photo = (CORPUS / "photo-12mp.jpg").read_bytes()  # a dragonfly on leaves: busy border
    cases = [("baseline", photo), ("segmentation", photo), ("classical", product_12mp()),
             ("moderate", photo)]  # fmt: skip
    ctx = multiprocessing.get_context("spawn")
    for name, data in cases:
        queue = ctx.Queue()
        child = ctx.Process(target=case, args=(name, data, queue))
        child.start()
        print(json.dumps(queue.get()), flush=True)
        child.join()


if __name__ == "__main__":
    main()
