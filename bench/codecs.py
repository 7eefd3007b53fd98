"""Quality per byte and CPU per encode: the 12 MP photo at 800 px, encoded as imgcdn does
(JPEG q80 `balanced`, WebP q80, AVIF q55 at efforts 0 and 1, and libvips' default effort 4
for reference), each scored by SSIM on luma against the unencoded resize.

    python bench/codecs.py    (one JSON line per encoding)

It is why AVIF defaults to effort 0 and q 55: a file smaller than WebP q80's at about the
same SSIM, for about the same CPU.
"""

from __future__ import annotations

import json
import resource
from pathlib import Path
from typing import Any

import pyvips

PHOTO = Path(__file__).resolve().parent / "corpus" / "photo-12mp.jpg"

ENCODINGS: list[tuple[str, str, dict[str, Any]]] = [
    ("jpeg q80 (balanced)", "jpegsave_buffer", {"Q": 80, "optimize_coding": True}),
    ("webp q80", "webpsave_buffer", {"Q": 80}),
    ("avif q55 effort 0", "heifsave_buffer", {"Q": 55, "compression": "av1", "effort": 0}),
    ("avif q55 effort 1", "heifsave_buffer", {"Q": 55, "compression": "av1", "effort": 1}),
    ("avif q65 effort 0", "heifsave_buffer", {"Q": 65, "compression": "av1", "effort": 0}),
    (
        "avif q55 effort 4 (libvips default)",
        "heifsave_buffer",
        {"Q": 55, "compression": "av1", "effort": 4},
    ),
]


def ssim(a: pyvips.Image, b: pyvips.Image) -> float:
    """Mean SSIM of two same-size images on luma (Gaussian window, sigma 1.5)."""
    x = a.colourspace("b-w")[0].cast("float")
    y = b.colourspace("b-w")[0].cast("float")

    def blur(image: pyvips.Image) -> pyvips.Image:
        return image.gaussblur(1.5, precision="float")

    mx, my = blur(x), blur(y)
    vx, vy = blur(x * x) - mx * mx, blur(y * y) - my * my
    cov = blur(x * y) - mx * my
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    top = (mx * my * 2 + c1) * (cov * 2 + c2)
    bottom = (mx * mx + my * my + c1) * (vx + vy + c2)
    return float((top / bottom).avg())


def cpu() -> float:
    used = resource.getrusage(resource.RUSAGE_SELF)
    return used.ru_utime + used.ru_stime


def main() -> None:
    pyvips.cache_set_max(0)
    pyvips.concurrency_set(1)
    source = pyvips.Image.new_from_file(str(PHOTO), shrink=4)
    reference = source.resize(800 / source.width, kernel="lanczos3").copy_memory()
    for label, saver, options in ENCODINGS:
        getattr(reference, saver)(**options)  # warm-up
        repeats = 1 if options.get("effort", 0) >= 4 else 3
        before = cpu()
        for _ in range(repeats):
            body = getattr(reference, saver)(**options)
        ms = 1000 * (cpu() - before) / repeats
        decoded = pyvips.Image.new_from_buffer(body, "")
        print(
            json.dumps(
                {
                    "encoding": label,
                    "kb": round(len(body) / 1024, 1),
                    "ssim": round(ssim(reference, decoded), 4),
                    "encode_cpu_ms": round(ms, 1),
                }
            )
        )


if __name__ == "__main__":
    main()
