"""Sources libvips cannot decode itself: HEIC (HEVC in HEIF, through pi-heif) and BMP
(through Pillow). Each has a header read that decodes no pixel, and a decode that hands
the pixels to libvips as an in-memory image, so every later step is the same as for JPEG.

pi-heif, not pillow-heif: both wrap libheif + libde265, but pillow-heif's wheels also
bundle the x265 encoder and are GPLv2 as a whole; pi-heif's are decoder-only, LGPLv3
(dynamically linked shared libraries), which an MIT project can ship beside.

Neither library can be stopped mid-decode, so a timeout cannot cut a decode short: what
bounds one is the pixel limit, checked on these headers before any decode starts (0.4 to
0.6 s per 12 MP of HEIC, up to ~2 s on a busy machine; docs/delivery.md#input-formats).
"""

from __future__ import annotations

import io
import struct
from dataclasses import dataclass
from pathlib import Path

import pi_heif
import pyvips
from PIL import BmpImagePlugin, Image

from server.errors import TooLarge, Undecodable

# BITMAPCOREHEADER (12) and the BITMAPINFOHEADER family Pillow reads (40 .. 124 bytes).
BMP_DIB_SIZES = (12, 40, 52, 56, 64, 108, 124)
_BMP_DEPTHS = (1, 4, 8, 16, 24, 32)
# compression -> the depths it is defined for: none, RLE8, RLE4, BITFIELDS. JPEG- and
# PNG-in-BMP (4, 5) Pillow cannot decode; anything else is not BMP.
_BMP_COMPRESSIONS = {0: _BMP_DEPTHS, 1: (8,), 2: (4,), 3: (16, 32)}
# What Pillow's BMP reader may hand over, and the mode libvips gets instead.
_PIL_MODES = {"L": "L", "RGB": "RGB", "RGBA": "RGBA", "1": "L", "P": "RGB"}


@dataclass(frozen=True, slots=True)
class Header:
    width: int  # upright, as decoded
    height: int
    alpha: bool
    images: int  # top-level images in the file (HEIC); only the primary one is decoded


def bmp_header(data: bytes, max_pixels: int | None) -> Header:
    """The BMP header read with struct before Pillow sees the file, then Pillow's lazy open
    (header only), which must agree. Refuses too many pixels, bad depths and compressions,
    and a truncated uncompressed raster, all without decoding. Our pixel check comes first:
    Pillow's DecompressionBombError is only a fence behind it."""
    if len(data) < 26 or data[:2] != b"BM":
        raise Undecodable("source is not a BMP image: the header is cut short")
    (dib,) = struct.unpack_from("<I", data, 14)
    if dib not in BMP_DIB_SIZES or len(data) < 14 + dib:
        raise Undecodable(f"source is a BMP with an unsupported {dib}-byte header")
    if dib == 12:
        width, height, planes, bpp = struct.unpack_from("<HHHH", data, 18)
        compression = 0
    else:
        width, height, planes, bpp, compression = struct.unpack_from("<iiHHI", data, 18)
    rows = abs(height)  # a negative height is a top-down raster
    if width <= 0 or rows == 0:
        raise Undecodable(f"source is a BMP declaring {width}x{height} pixels")
    check_pixels(width, rows, max_pixels)
    if planes != 1 or bpp not in _BMP_COMPRESSIONS.get(compression, ()):
        raise Undecodable(
            f"source is a BMP with {bpp} bits per pixel and compression {compression}, "
            "which is not a valid BMP layout"
        )
    if compression == 0:
        (offset,) = struct.unpack_from("<I", data, 10)
        stride = (width * bpp + 31) // 32 * 4
        if offset + stride * rows > len(data):
            raise Undecodable(
                f"source is a truncated BMP: {width}x{rows} pixels need "
                f"{offset + stride * rows} bytes, the file has {len(data)}"
            )
    image = _bmp_open(data)
    if image.size != (width, rows):
        raise Undecodable("source is a BMP whose header Pillow reads differently")
    return Header(width, rows, alpha=image.mode == "RGBA", images=1)


def heic_header(data: bytes, max_pixels: int | None) -> Header:
    """The primary image's size (after libheif's rotation/mirror boxes) and alpha, from the
    file's boxes only: no HEVC is decoded. The size is the primary image's, whichever
    index it has, since that is the one decoded."""
    heif = _heif_open(data)
    width, height = heif.size
    check_pixels(width, height, max_pixels)
    return Header(width, height, alpha="A" in heif.mode, images=len(heif))


def decode(source: bytes | Path, kind: str) -> pyvips.Image:
    """The whole primary image of a `heic` or `bmp` source, in memory, as libvips sees a
    loaded sRGB (or grey) image. Call after `probe` has accepted the source's header."""
    data = source.read_bytes() if isinstance(source, Path) else source
    if kind == "bmp":
        return _bmp_decode(data)
    if kind == "heic":
        return _heic_decode(data)
    raise ValueError(f"no decoder here for {kind!r}")


def check_pixels(width: int, height: int, max_pixels: int | None) -> None:
    if max_pixels is not None and width * height > max_pixels:
        raise TooLarge(
            f"source is {width}x{height} = {width * height} pixels, the limit is {max_pixels}"
        )


def _bmp_open(data: bytes) -> BmpImagePlugin.BmpImageFile:
    try:
        image = Image.open(io.BytesIO(data), formats=["BMP"])  # no other Pillow reader
    except Image.DecompressionBombError as exc:
        raise TooLarge(f"source is too many pixels: {exc}") from exc
    except (OSError, ValueError, SyntaxError, struct.error) as exc:
        raise Undecodable(f"source cannot be decoded as bmp: {_message(exc)}") from exc
    assert isinstance(image, BmpImagePlugin.BmpImageFile)  # formats=["BMP"] above
    return image


def _bmp_decode(data: bytes) -> pyvips.Image:
    bmp_header(data, None)  # probe checked the pixels; the layout is checked again here
    image = _bmp_open(data)
    try:
        # ImageFile.LOAD_TRUNCATED_IMAGES stays False: a cut RLE stream is an error here.
        image.load()
    except (OSError, ValueError, SyntaxError, struct.error) as exc:
        raise Undecodable(f"source cannot be decoded as bmp: {_message(exc)}") from exc
    mode = _PIL_MODES.get(image.mode, "RGB")
    pixels = image if image.mode == mode else image.convert(mode)
    icc = image.info.get("icc_profile")
    return _to_vips(pixels.tobytes(), pixels.width, pixels.height, len(mode), icc)


def _heif_open(data: bytes) -> pi_heif.HeifFile:
    try:
        return pi_heif.open_heif(io.BytesIO(data))
    except (ValueError, RuntimeError, OSError, EOFError) as exc:
        raise Undecodable(f"source cannot be decoded as heic: {_message(exc)}") from exc


def _heic_decode(data: bytes) -> pyvips.Image:
    heif = _heif_open(data)
    primary = heif[heif.primary_index]
    try:
        pixels, stride = primary.data, primary.stride  # .data runs libde265 over the image
    except (ValueError, RuntimeError, OSError, EOFError) as exc:
        raise Undecodable(f"source cannot be decoded as heic: {_message(exc)}") from exc
    width, height = primary.size
    bands = {"L": 1, "RGB": 3, "RGBA": 4}.get(primary.mode)
    if bands is None:  # 16-bit or premultiplied layouts: let pi-heif's Pillow side convert
        image = primary.to_pillow().convert("RGBA" if "A" in primary.mode else "RGB")
        return _to_vips(image.tobytes(), width, height, len(image.mode), _heic_icc(primary))
    # Copied out: the memoryview points into libheif's image, which is freed with the
    # HeifFile, and libvips would read it later (the render failed on a freed buffer).
    row = width * bands
    if stride == row:
        packed = bytes(pixels)
    else:  # libheif pads rows to its alignment; libvips wants them packed
        view = memoryview(pixels)
        packed = b"".join(view[y * stride : y * stride + row] for y in range(height))
    return _to_vips(packed, width, height, bands, _heic_icc(primary))


def _heic_icc(image: pi_heif.HeifImage) -> bytes | None:
    # Phones tag HEIC photos Display P3 with an ICC profile ("prof"); an nclx box alone is
    # left to the sRGB default, as libvips does for untagged JPEGs.
    icc = image.info.get("icc_profile")
    return bytes(icc) if icc and image.info.get("icc_profile_type") in ("prof", "rICC") else None


def _to_vips(pixels: bytes, width: int, height: int, bands: int, icc: bytes | None) -> pyvips.Image:
    image = pyvips.Image.new_from_memory(pixels, width, height, bands, "uchar")
    image = image.copy(interpretation="b-w" if bands <= 2 else "srgb")
    if icc:
        image.set_type(pyvips.GValue.blob_type, "icc-profile-data", icc)
    return image


def _message(exc: Exception) -> str:
    # libheif ends its messages with a newline; keep the error one line, and short.
    return " ".join(str(exc).split())[:200]
