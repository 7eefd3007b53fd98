"""CPU ms per render, one at a time, for imgcdn's pipeline and libvips' own recipe.

    .venv/bin/python bench/render_cost.py [--file PHOTO] [--n 8]

The first seed of the benchmark (issue #5): it measures work, not throughput, so it is
steady on a busy machine. PHOTO defaults to the shared corpus's 12 MP photo.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyvips

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from server.imaging import inspect, pipeline, vips
from server.imaging.options import RenderOptions
from server.spec import Format, Limits, parse_query

DEFAULT = Path(__file__).resolve().parents[2] / "shared" / "corpus" / "photo-12mp.jpg"


def cost(job: Callable[[], None], n: int) -> float:
    job()  # warm-up: page cache, codec set-up
    started = time.process_time()
    for _ in range(n):
        job()
    return (time.process_time() - started) * 1000 / n


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--file", type=Path, default=DEFAULT)
    ap.add_argument("--n", type=int, default=8)
    a = ap.parse_args()
    vips.configure()
    data = a.file.read_bytes()
    info = inspect.probe(data, inspect.SourceLimits(1 << 30, 1 << 30, 10))
    spec = parse_query("w=800", Limits())

    def ours(fmt: Format, **options: Any) -> tuple[str, Callable[[], None], list[int]]:
        opts = RenderOptions(**options)
        sizes: list[int] = []

        def job() -> None:
            sizes.append(len(pipeline.render(data, info, spec, fmt, opts, vips.Cancel()).body))

        return f"imgcdn {fmt} {options or ''}", job, sizes

    def recipe() -> None:
        image = pyvips.Image.new_from_file(str(a.file), shrink=4, access="sequential")
        image.resize(800 / image.width, kernel="lanczos3").jpegsave_buffer(Q=80)

    print(f"{a.file.name} -> 800 px, CPU ms per render (n={a.n})")
    print(f"{'libvips recipe (shrink 4 + lanczos3, from file)':58s} {cost(recipe, a.n):7.1f}")
    jobs = [
        ours("jpeg", jpeg_preset="fast"),
        ours("jpeg", jpeg_preset="balanced"),
        ours("jpeg", jpeg_preset="small"),
        ours("jpeg", shrink_rule="quality"),
        ours("webp"),
        ours("avif", avif_effort=0),
        ours("avif", avif_effort=1),
    ]
    for label, job, sizes in jobs:
        ms = cost(job, a.n if "avif" not in label else max(2, a.n // 2))
        print(f"{label:58s} {ms:7.1f}   {sizes[-1] / 1024:6.1f} KB")


if __name__ == "__main__":
    main()
