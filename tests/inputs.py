"""Sources in the formats tests/test_inputs_*.py read (BMP and TIFF made here, at run time,
from the committed test images; HEIC is committed), and how a render is compared."""

from __future__ import annotations

import io
import itertools
import struct

import httpx2 as httpx
import pyvips
from conftest import AUTH, IMAGES
from PIL import Image
from starlette.testclient import TestClient


def put(client: TestClient, asset_id: str, data: bytes) -> httpx.Response:
    return client.put(f"/v1/assets/{asset_id}", content=data, headers=AUTH)


def pil_bytes(image: Image.Image, fmt: str, **options: object) -> bytes:
    buf = io.BytesIO()
    image.save(buf, fmt, **options)
    return buf.getvalue()


def photo_as(fmt: str, **options: object) -> bytes:
    """tests/images/photo.jpg (800x600) re-saved by Pillow as `fmt`."""
    with Image.open(IMAGES / "photo.jpg") as image:
        return pil_bytes(image, fmt, **options)


def bmp(
    width: int,
    height: int,
    bpp: int = 24,
    compression: int = 0,
    raster: bytes | None = None,
    palette: bytes = b"",
    dib: int = 40,
) -> bytes:
    """A BMP written field by field, so a test can make it lie. `height` < 0 is top-down;
    `raster` defaults to a black uncompressed one of the right size; `palette` is BGRX."""
    if raster is None:
        raster = bytes((width * bpp + 31) // 32 * 4 * abs(height))
    fields = (dib, width, height, 1, bpp, compression, len(raster), 0, 0, len(palette) // 4, 0)
    info = struct.pack("<IiiHHIIiiII", *fields)
    info += bytes(dib - len(info)) + palette
    offset = 14 + len(info)
    head = b"BM" + struct.pack("<IHHI", offset + len(raster), 0, 0, offset)
    return head + info + raster


def tiff(
    width: int,
    height: int,
    *,
    spp: int = 3,
    bps: int = 8,
    pages: int = 1,
    data: bytes = bytes(64),
) -> bytes:
    """A little-endian TIFF written IFD by IFD (each page the same), one strip of `data`,
    so a test can declare any size, depth or page count in a small file."""
    out = bytearray(b"II*\0" + bytes(4))
    data_offset = len(out)
    out += data
    entries = [
        (256, 4, width),  # ImageWidth
        (257, 4, height),  # ImageLength
        (258, 3, bps),  # BitsPerSample
        (259, 3, 1),  # Compression: none
        (262, 3, 2 if spp >= 3 else 1),  # Photometric: RGB or min-is-black
        (273, 4, data_offset),  # StripOffsets
        (277, 3, spp),  # SamplesPerPixel
        (278, 4, height),  # RowsPerStrip
        (279, 4, len(data)),  # StripByteCounts
        (284, 3, 1),  # PlanarConfiguration: chunky
    ]
    ifd = struct.pack("<H", len(entries))
    for tag, kind, value in entries:
        packed = struct.pack("<HH", value, 0) if kind == 3 else struct.pack("<I", value)
        ifd += struct.pack("<HHI", tag, kind, 1) + packed
    offsets = []
    for _ in range(pages):
        offsets.append(len(out))
        out += ifd + bytes(4)
    struct.pack_into("<I", out, 4, offsets[0])
    for here, after in itertools.pairwise(offsets):
        struct.pack_into("<I", out, here + len(ifd), after)
    return bytes(out)


def rle8(rows: list[bytes]) -> bytes:
    """An RLE8 raster (bottom row first, as BMP stores it): one run per pixel, then each
    row's end-of-line, then end-of-bitmap."""
    out = bytearray()
    for row in rows:
        for index in row:
            out += bytes((1, index))
        out += b"\0\0"
    return bytes(out) + b"\0\1"


def render(client: TestClient, asset_id: str, query: str = "w=100&fmt=jpeg") -> pyvips.Image:
    r = client.get(f"/t/_/{asset_id}?{query}")
    assert r.status_code == 200, r.text
    return pyvips.Image.new_from_buffer(r.content, "")


def difference(a: pyvips.Image, b: pyvips.Image) -> float:
    """Mean absolute difference (0..255) of two same-size renders on a 10-wide grid: small
    when they show the same picture the same way up, large when one is turned or flipped."""
    assert (a.width, a.height) == (b.width, b.height)
    scale = 10 / a.width

    def grid(image: pyvips.Image) -> pyvips.Image:
        return image.flatten().colourspace("srgb").resize(scale).cast("float")

    return float((grid(a) - grid(b)).abs().avg())
