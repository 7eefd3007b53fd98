"""What a source is, from its first bytes and its header: format, size, frames, alpha.

Every limit on a source is checked here, before any pixel is decoded: a 600-byte JPEG may
declare 20000 x 20000 pixels, and only its header is read before it is refused.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyvips

from server.errors import TooLarge, Undecodable, UnsupportedFormat
from server.imaging.vips import Cancel
from server.spec import Format

# Magic numbers we accept. Anything else (TIFF, SVG, PDF, BMP, ...) is 415 before libvips
# sees it; libvips' own loader allow-list (imaging/vips.py) is the second fence.
_SOURCE_MIME = {"jpeg": "image/jpeg", "png": "image/png", "gif": "image/gif", "webp": "image/webp"}
_HEIF_BRANDS = (b"avif", b"avis", b"heic", b"heix", b"mif1", b"msf1", b"heim", b"heis")


@dataclass(frozen=True, slots=True)
class SourceLimits:
    max_bytes: int
    max_pixels: int
    max_frames: int


@dataclass(frozen=True, slots=True)
class SourceInfo:
    kind: str  # jpeg png webp gif heif
    mime: str
    width: int  # upright, after EXIF orientation
    height: int
    frames: int
    alpha: bool
    palette: bool
    orientation: int

    @property
    def output_kind(self) -> Format:
        """The source's own kind as an output format (HEIF has no default of its own)."""
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
    if data[4:8] == b"ftyp" and data[8:12] in _HEIF_BRANDS:
        return "heif"
    raise UnsupportedFormat("source is not a JPEG, PNG, WebP, GIF, AVIF or HEIC image")


_BUFFER_LOADERS = {
    "jpeg": pyvips.Image.jpegload_buffer,
    "png": pyvips.Image.pngload_buffer,
    "gif": pyvips.Image.gifload_buffer,
    "webp": pyvips.Image.webpload_buffer,
    "heif": pyvips.Image.heifload_buffer,
}
# The same loaders over a file (the kind was sniffed from its bytes at upload, so the file
# name's lack of an extension does not matter).
_FILE_LOADERS = {
    "jpeg": pyvips.Image.jpegload,
    "png": pyvips.Image.pngload,
    "gif": pyvips.Image.gifload,
    "webp": pyvips.Image.webpload,
    "heif": pyvips.Image.heifload,
}


def header(source: bytes | Path, kind: str, **options: Any) -> pyvips.Image:
    """A lazy image over `source` (bytes, or a local file) through the loader for `kind`:
    only the header is read."""
    try:
        if isinstance(source, Path):
            return _FILE_LOADERS[kind](str(source), **options)
        return _BUFFER_LOADERS[kind](source, **options)
    except pyvips.Error as exc:
        raise Undecodable(f"source cannot be decoded as {kind}: {_first_line(exc)}") from exc


def probe(data: bytes, limits: SourceLimits) -> SourceInfo:
    """Sniff, read the header, and enforce the byte, pixel and frame limits."""
    if len(data) > limits.max_bytes:
        raise TooLarge(f"source is {len(data)} bytes, the limit is {limits.max_bytes}")
    kind = sniff(data)
    image = header(data, kind, access="sequential")
    fields = set(image.get_fields())
    frames = int(image.get("n-pages")) if "n-pages" in fields else 1
    if kind == "heif":
        frames = 1  # HEIF pages are separate images, not frames; we render the primary one
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
    if orientation in (5, 6, 7, 8):
        width, height = height, width
    return SourceInfo(
        kind=kind,
        mime=_mime(kind, data),
        width=width,
        height=height,
        frames=frames,
        alpha=image.hasalpha(),
        palette=kind == "gif" or bool(image.get("palette") if "palette" in fields else 0),
        orientation=orientation,
    )


def check_decodes(data: bytes, info: SourceInfo, cancel: Cancel) -> None:
    """Decode the whole stream (shrunk where the codec allows) so a truncated or corrupt
    upload is refused before it is stored. Runs in the render pool: it is CPU work."""
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
        return "image/avif" if data[8:12] in (b"avif", b"avis") else "image/heif"
    return _SOURCE_MIME[kind]


def _first_line(exc: pyvips.Error) -> str:
    # libvips errors carry a multi-line log; its useful part is the last specific line.
    text = str(getattr(exc, "detail", "") or exc).strip()
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1][:200] if lines else "unknown error"
