"""What parsing EXIF costs, well-formed and hostile: the time per parse (median of many) of a
phone's blob, of 64 KB and 1 MiB blobs whose IFD0 declares 65535 entries of wanted tags
with long text values, of a blob whose IFDs point at each other, and of the whole metadata
answer for a real photo; then what libvips (libexif) itself spends on JPEGs whose IFD0
points its Exif and GPS pointers back at itself (each in a child process, killed at a
deadline), and what exifsafe.defuse spends cutting that block out.

    python bench/exif.py    (one JSON line per case; run from the repository root; the
                             libvips cases take about 30 s of CPU)

It is the figure behind exif.py's bounds (the worst blob must parse in well under 50 ms)
and the reason for exifsafe.py.
"""

from __future__ import annotations

import json
import statistics
import struct
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from exif_blobs import CAMERA_EXIF, CAMERA_GPS, CAMERA_IFD0, build, fan_out, in_jpeg  # noqa: E402

from server.imaging.exif import WANTED, parse  # noqa: E402
from server.imaging.exifsafe import defuse  # noqa: E402
from server.imaging.inspect import SourceLimits, probe  # noqa: E402
from server.imaging.metadata import describe  # noqa: E402


def hostile(size: int) -> bytes:
    """IFD0 declaring 65535 entries, cycling through every wanted tag as ASCII text whose
    1 KiB value sits at the end of the blob, padded to `size` bytes."""
    tags = sorted({tag for wanted in WANTED.values() for tag in wanted})
    text_at = size - 1100
    n = (text_at - 10) // 12
    table = b"".join(struct.pack("<HHLL", tags[i % len(tags)], 2, 1024, text_at) for i in range(n))
    blob = b"II*\x00" + struct.pack("<LH", 8, 0xFFFF) + table
    return blob.ljust(text_at, b"\x00") + (b"\x1bx" * 600)[:1100]


def looped() -> bytes:
    """IFD0 whose Exif and GPS pointers both point back at IFD0, next-IFD at itself."""
    entries = struct.pack("<HHLL", 0x8769, 4, 1, 8) + struct.pack("<HHLL", 0x8825, 4, 1, 8)
    return b"II*\x00" + struct.pack("<LH", 8, 2) + entries + struct.pack("<L", 8)


def median_ms(run: Callable[[], object], rounds: int) -> float:
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return round(statistics.median(times) * 1000, 3)


def main() -> None:
    photo = (ROOT / "tests" / "images" / "orient6.jpg").read_bytes()
    info = probe(photo, SourceLimits(50_000_000, 100_000_000, 100))
    cases: list[tuple[str, bytes]] = [
        ("phone blob", build(CAMERA_IFD0, CAMERA_EXIF, CAMERA_GPS)),
        ("64 KB, 65535 entries declared", hostile(64 * 1024)),
        ("1 MiB, 65535 entries declared", hostile(1 << 20)),
        ("IFD loop", looped()),
    ]
    for name, blob in cases:
        tags = parse(blob)
        ms = median_ms(lambda blob=blob: parse(blob), 200)  # type: ignore[misc]
        print(
            json.dumps(
                {"case": name, "bytes": len(blob), "entries_read": tags.entries_read, "ms": ms}
            )
        )
    ms = median_ms(lambda: describe(photo, info), 200)
    print(json.dumps({"case": "describe() orient6.jpg", "bytes": len(photo), "ms": ms}))
    plain = (ROOT / "tests" / "images" / "photo.jpg").read_bytes()
    for pointers, deadline in ((10, 30), (100, 30), (400, 30), (1000, 20)):
        data = in_jpeg(plain, fan_out(pointers))
        ms = median_ms(lambda data=data: defuse(data), 200)  # type: ignore[misc]
        app1 = len(fan_out(pointers)) + 10
        print(json.dumps({"case": f"defuse(), {pointers} pointers", "app1_bytes": app1, "ms": ms}))
        print(
            json.dumps(
                {"case": f"libvips header read, {pointers} pointers", "app1_bytes": app1}
                | libvips_header_seconds(data, deadline)
            )
        )


def libvips_header_seconds(data: bytes, deadline: float) -> dict[str, object]:
    """How long pyvips.Image.new_from_buffer(data) takes in a child process, or that it was
    still running at `deadline` seconds and killed."""
    code = (
        "import sys, time, pyvips; d = sys.stdin.buffer.read(); t = time.perf_counter();"
        "pyvips.Image.new_from_buffer(d, '').get_fields(); print(time.perf_counter() - t)"
    )
    try:
        done = subprocess.run(  # noqa: S603  # our own interpreter on our own snippet
            [sys.executable, "-c", code], input=data, capture_output=True, timeout=deadline
        )
    except subprocess.TimeoutExpired:
        return {"killed_after_s": deadline}
    return {"s": round(float(done.stdout), 3)}


if __name__ == "__main__":
    main()
