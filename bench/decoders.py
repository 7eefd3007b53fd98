"""Decode time of a 12 MP source per input format, as imgcdn decodes each: the header read
(`probe`) and the full decode into memory (`inspect.header` + copy_memory for libvips'
loaders; pi-heif for HEIC and Pillow for BMP hand over memory already).

    python bench/decoders.py HEIC [--repeat 5]    (one JSON line per format)

HEIC is given, since imgcdn cannot encode it; make one once outside the project:

    /tmp/heicenc/bin/python -c "import pillow_heif; from PIL import Image; \\
      photo = Image.open('bench/corpus/photo-12mp.jpg'); \\
      pillow_heif.from_pillow(photo).save('/tmp/p.heic', quality=80)"

JPEG, BMP and TIFF (LZW) are the same photo, bench/corpus/photo-12mp.jpg, re-saved here.
"""

from __future__ import annotations

import argparse
import io
import json
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import pi_heif
import pyvips
from PIL import Image

from server.imaging import vips
from server.imaging.inspect import SourceLimits, header, probe

PHOTO = Path(__file__).resolve().parent / "corpus" / "photo-12mp.jpg"
LIMITS = SourceLimits(max_bytes=200 << 20, max_pixels=100_000_000, max_frames=256)


def timed(call: Callable[[], object], repeat: int) -> float:
    """Median wall time of `call` in ms."""
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        call()
        times.append((time.perf_counter() - started) * 1000)
    return round(statistics.median(times), 2)


def decode(data: bytes) -> pyvips.Image:
    info = probe(data, LIMITS)
    return header(data, info.kind, access="sequential").copy_memory()


def pillow_as(fmt: str, **options: object) -> bytes:
    buf = io.BytesIO()
    with Image.open(PHOTO) as image:
        image.save(buf, fmt, **options)
    return buf.getvalue()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("heic", type=Path)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    vips.configure()
    sources = {
        "jpeg": PHOTO.read_bytes(),
        "heic": args.heic.read_bytes(),
        "bmp": pillow_as("BMP"),
        "tiff-lzw": pillow_as("TIFF", compression="tiff_lzw"),
    }
    for name, data in sources.items():
        row: dict[str, object] = {"format": name, "bytes": len(data)}
        image = decode(data)
        row["size"] = f"{image.width}x{image.height}"
        row["probe_ms"] = timed(lambda data=data: probe(data, LIMITS), args.repeat)
        if name == "heic":
            for threads in (1, 4):  # pi-heif's default is 4; imgcdn's renders use 1 each
                pi_heif.options.DECODE_THREADS = threads
                row[f"decode_ms_{threads}_threads"] = timed(
                    lambda data=data: decode(data), args.repeat
                )
        else:
            row["decode_ms"] = timed(lambda data=data: decode(data), args.repeat)
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
