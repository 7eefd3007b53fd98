"""What a source is, from its first bytes and its header: format, size, frames, alpha.

Every limit on a source is checked here, before any pixel is decoded: a 600-byte JPEG may
declare 20000 x 20000 pixels, and only its header is read before it is refused.

Kinds: jpeg png gif webp tiff, and heif (AVIF, AV1 in HEIF) go through libvips' loaders;
heic (HEVC in HEIF) and bmp through imaging/decoders.py, which libvips sees as pixels in
memory. `header` and `check_decodes` hide the difference from their callers.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyvips

from server.errors import TooLarge, Undecodable, UnsupportedFormat
from server.imaging import decoders, exifsafe
from server.imaging.vips import Cancel
from server.spec import Format

# Magic numbers we accept. Anything else (SVG, PDF, JPEG XL, ...) is 415 before libvips
# sees it; libvips' own loader allow-list (imaging/vips.py) is the second fence.
_SOURCE_MIME = {
    "jpeg": "image/jpeg",
    "png": "image/png",
    "gif": "image/gif",
    "webp": "image/webp",
    "heic": "image/heic",
    "bmp": "image/bmp",
    "tiff": "image/tiff",
}
_TIFF_MAGIC = (b"II*\0", b"MM\0*", b"II+\0", b"MM\0+")  # classic and BigTIFF
# HEIF brands by codec. The generic ones (mif1, msf1, miaf) say nothing of it, so then the
# compatible brands, and failing those the codec configuration box (hvcC / av1C), decide.
_HEVC_BRANDS = frozenset({b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx"})
_AV1_BRANDS = frozenset({b"avif", b"avis"})
_GENERIC_BRANDS = frozenset({b"mif1", b"msf1", b"mif2", b"miaf"})
# Decoded bytes per pixel we allow at the pixel limit: 16-bit RGBA. A float or
# many-sample TIFF of the same size would need several times the memory.
_MAX_BYTES_PER_PIXEL = 8
_SAMPLE_BYTES = {
    "uchar": 1,
    "char": 1,
    "ushort": 2,
    "short": 2,
    "uint": 4,
    "int": 4,
    "float": 4,
    "complex": 8,
    "double": 8,
    "dpcomplex": 16,
}


@dataclass(frozen=True, slots=True)
class SourceLimits:
    max_bytes: int
    max_pixels: int
    max_frames: int


@dataclass(frozen=True, slots=True)
class SourceInfo:
    kind: str  # jpeg png webp gif heif (AVIF) heic (HEVC) bmp tiff
    mime: str
    width: int  # upright, after EXIF orientation
    height: int
    frames: int
    alpha: bool
    palette: bool
    orientation: int

    @property
    def output_kind(self) -> Format:
        """The source's own kind as an output format. HEIF, HEIC, BMP and TIFF are no
        output format: they pass as "avif", which formats.choose() treats like any "other"
        source (png with alpha, else jpeg), as SPEC §2 says."""
        if self.kind in ("jpeg", "png", "gif", "webp"):
            return self.kind  # type: ignore[return-value]  # checked just above
        return "avif"


def sniff(data: bytes) -> str:
    if data[:3] == b"\xff\xd8\xff":
        return "jpeg"
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        return "png"
    if data[:6] in (b"GIF87a", b"GIF89a"):
        return "gif"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "webp"
    if data[4:8] == b"ftyp":
        kind = _heif_kind(data)
        if kind is not None:
            return kind
    if data[:4] in _TIFF_MAGIC:
        return "tiff"
    if data[:2] == b"BM" and data[14:18] in _BMP_DIB_FIELDS:
        return "bmp"
    raise UnsupportedFormat("source is not a JPEG, PNG, WebP, GIF, AVIF, HEIC, BMP or TIFF image")


_BMP_DIB_FIELDS = frozenset(size.to_bytes(4, "little") for size in decoders.BMP_DIB_SIZES)


def _heif_kind(data: bytes) -> str | None:
    """heic (HEVC, decoded by pi-heif), heif (AV1 and the rest, by libvips) or None."""
    end = min(int.from_bytes(data[:4], "big"), len(data), 256)
    major = data[8:12]
    compatible = {data[i : i + 4] for i in range(16, end - 3, 4)}
    if major in _HEVC_BRANDS:
        return "heic"
    if major in _AV1_BRANDS:
        return "heif"
    if major not in _GENERIC_BRANDS:
        return None
    if compatible & _AV1_BRANDS:
        return "heif"
    if compatible & _HEVC_BRANDS:
        return "heic"
    # The codec box sits in the meta box near the start; look no further than 64 KB.
    head = data[: 64 * 1024]
    return "heic" if b"hvcC" in head and b"av1C" not in head else "heif"


_BUFFER_LOADERS = {
    "jpeg": pyvips.Image.jpegload_buffer,
    "png": pyvips.Image.pngload_buffer,
    "gif": pyvips.Image.gifload_buffer,
    "webp": pyvips.Image.webpload_buffer,
    "heif": pyvips.Image.heifload_buffer,
    "tiff": pyvips.Image.tiffload_buffer,
}
# The same loaders over a file (the kind was sniffed from its bytes at upload, so the file
# name's lack of an extension does not matter).
_FILE_LOADERS = {
    "jpeg": pyvips.Image.jpegload,
    "png": pyvips.Image.pngload,
    "gif": pyvips.Image.gifload,
    "webp": pyvips.Image.webpload,
    "heif": pyvips.Image.heifload,
    "tiff": pyvips.Image.tiffload,
}


def header(source: bytes | Path, kind: str, **options: Any) -> pyvips.Image:
    """A lazy image over `source` (bytes, or a local file) through the loader for `kind`:
    only the header is read. heic and bmp have no libvips loader: for them this is the
    whole decoded image (options do not apply), so call it only after `probe` passed."""
    if kind in ("heic", "bmp"):
        return decoders.decode(source, kind)
    if isinstance(source, bytes):
        # libexif, which libvips runs over every header, follows EXIF pointer loops without
        # bound (a 12 KB file holds a thread for minutes): cut such blocks before it looks.
        # Stored files were cut at upload (assets.put_asset).
        source = exifsafe.defuse(source)
    if kind == "tiff":
        # Page 0 only, whatever the caller asks: a TIFF's pages are a document's pages,
        # not frames, and shrink-on-load does not apply.
        options = {k: v for k, v in options.items() if k in ("access", "fail_on")}
        options |= {"page": 0, "n": 1}
    try:
        if isinstance(source, Path):
            return _FILE_LOADERS[kind](str(source), **options)
        return _BUFFER_LOADERS[kind](source, **options)
    except pyvips.Error as exc:
        raise Undecodable(f"source cannot be decoded as {kind}: {_first_line(exc)}") from exc


def thumbnail(source: bytes, width: int, height: int) -> pyvips.Image:
    """An accepted source shrunk to fit `width` x `height`, as thumbnail_buffer does (a
    watermark asset); heic and bmp are decoded first, libvips having no loader for them."""
    kind = sniff(source)
    if kind in ("heic", "bmp"):
        return header(source, kind).thumbnail_image(width, height=height)
    return pyvips.Image.thumbnail_buffer(exifsafe.defuse(source), width, height=height)


def probe(data: bytes, limits: SourceLimits) -> SourceInfo:
    """Sniff, read the header, and enforce the byte, pixel and frame limits."""
    if len(data) > limits.max_bytes:
        raise TooLarge(f"source is {len(data)} bytes, the limit is {limits.max_bytes}")
    kind = sniff(data)
    if kind in ("heic", "bmp"):
        return _probe_decoded(data, kind, limits)
    image = header(data, kind, access="sequential")
    fields = set(image.get_fields())
    frames = int(image.get("n-pages")) if "n-pages" in fields else 1
    if kind == "tiff" and frames > limits.max_frames:
        # Only page 0 is read, but libtiff walks every page's directory at each open.
        raise TooLarge(f"source has {frames} pages, the limit is {limits.max_frames}")
    if kind in ("heif", "tiff"):
        frames = 1  # HEIF images and TIFF pages are not frames; we render the first/primary
    orientation = int(image.get("orientation")) if "orientation" in fields else 1
    width, height = image.width, image.height
    if kind in ("gif", "webp") and "page-height" in fields:
        height = int(image.get("page-height"))
    if frames > limits.max_frames:
        raise TooLarge(f"source has {frames} frames, the limit is {limits.max_frames}")
    pixels = width * height * frames
    if pixels > limits.max_pixels:
        raise TooLarge(
            f"source is {width}x{height}x{frames} = {pixels} pixels, "
            f"the limit is {limits.max_pixels}"
        )
    if kind == "tiff":
        _check_decoded_bytes(image, limits)
    if orientation in (5, 6, 7, 8):
        width, height = height, width
    return SourceInfo(
        kind=kind,
        mime=_mime(kind, data),
        width=width,
        height=height,
        frames=frames,
        alpha=bool(image.hasalpha()),
        palette=kind == "gif" or bool(image.get("palette") if "palette" in fields else 0),
        orientation=orientation,
    )


def _probe_decoded(data: bytes, kind: str, limits: SourceLimits) -> SourceInfo:
    """heic / bmp: their headers are read by imaging/decoders.py, which checks the pixel
    limit before the decoding library sees more than the header."""
    read = decoders.bmp_header if kind == "bmp" else decoders.heic_header
    head = read(data, limits.max_pixels)
    return SourceInfo(
        kind=kind,
        mime=_SOURCE_MIME[kind],
        width=head.width,
        height=head.height,
        frames=1,  # a HEIC's other images (bursts, depth maps) are not frames
        alpha=head.alpha,
        palette=False,
        orientation=1,  # libheif applies the irot/imir boxes, BMP has none: already upright
    )


def _check_decoded_bytes(image: pyvips.Image, limits: SourceLimits) -> None:
    """A TIFF may hold 64-bit samples or hundreds of bands per pixel: bound the decoded
    bytes, not only the pixels, before anything is decoded."""
    size = image.width * image.height * image.bands * _SAMPLE_BYTES.get(image.format, 16)
    budget = limits.max_pixels * _MAX_BYTES_PER_PIXEL
    if size > budget:
        raise TooLarge(
            f"source decodes to {size} bytes ({image.width}x{image.height}, {image.bands} "
            f"bands of {image.format}), the limit is {budget}"
        )


def check_decodes(data: bytes, info: SourceInfo, cancel: Cancel) -> None:
    """Decode the whole stream (shrunk where the codec allows) so a truncated or corrupt
    upload is refused before it is stored. Runs in the render pool: it is CPU work.
    HEIC and BMP decodes cannot be interrupted: the timeout is noticed once they end."""
    if info.kind in ("heic", "bmp"):
        cancel.watch(header(data, info.kind))
        return
    options: dict[str, Any] = {"access": "sequential", "fail_on": "truncated"}
    if info.kind == "jpeg":
        options["shrink"] = 8
    elif info.kind == "webp":
        options["scale"] = 0.125
    if info.frames > 1:
        options["n"] = -1
    try:
        cancel.watch(header(data, info.kind, **options)).avg()
    except pyvips.Error as exc:
        raise Undecodable(f"source cannot be decoded: {_first_line(exc)}") from exc


def _mime(kind: str, data: bytes) -> str:
    if kind == "heif":
        return "image/avif" if data[8:12] in _AV1_BRANDS else "image/heif"
    return _SOURCE_MIME[kind]


def _first_line(exc: pyvips.Error) -> str:
    # libvips errors carry a multi-line log; its useful part is the last specific line.
    text = str(getattr(exc, "detail", "") or exc).strip()
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1][:200] if lines else "unknown error"
