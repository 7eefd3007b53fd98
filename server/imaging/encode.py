"""Encoders per output format, with quality defaults, presets and the `maxbytes` search."""

from __future__ import annotations

from typing import Any

import pyvips

from server.errors import MaxBytesUnreachable
from server.imaging.options import RenderOptions
from server.spec import DEFAULT_QUALITY, LOSSY, Format, TransformSpec

# libvips' ForeignKeep flags: none, or everything (EXIF, XMP, IPTC, ICC, other).
KEEP_NONE, KEEP_ALL = 0, 31
_JPEG_PRESETS: dict[str, dict[str, Any]] = {
    "fast": {},
    "balanced": {"optimize_coding": True},
    # mozjpeg's defaults, which the bundled libvips has: ~15 % smaller, several times the
    # encode CPU.
    "small": {
        "optimize_coding": True,
        "trellis_quant": True,
        "overshoot_deringing": True,
        "optimize_scans": True,
        "quant_table": 3,
    },
}


def encode(
    image: pyvips.Image, fmt: Format, spec: TransformSpec, options: RenderOptions, palette: bool
) -> bytes:
    """Encode `image`; with `maxbytes`, the best quality whose result fits, or 422."""
    quality = spec.quality or DEFAULT_QUALITY.get(fmt, 100)
    if spec.maxbytes is None:
        return _save(image, fmt, spec, options, quality, palette)
    image = image.copy_memory()  # re-encoding must not decode the source again
    body = _save(image, fmt, spec, options, quality, palette)
    if len(body) <= spec.maxbytes:
        return body
    if fmt in LOSSY or fmt == "png":
        # Binary search for the highest quality that fits (png: palette quantisation).
        lo, hi, best = 1, quality - 1, None
        while lo <= hi:
            mid = (lo + hi) // 2
            candidate = _save(image, fmt, spec, options, mid, palette, force_palette=True)
            if len(candidate) <= spec.maxbytes:
                best, lo = candidate, mid + 1
            else:
                hi = mid - 1
        if best is not None:
            return best
    hint = "lower w/h" if fmt in LOSSY else "lower w/h or pick a lossy fmt"
    raise MaxBytesUnreachable(
        f"cannot encode this variant as {fmt} in {spec.maxbytes} bytes "
        f"({len(body)} bytes at quality {quality}); {hint}"
    )


def _save(
    image: pyvips.Image,
    fmt: Format,
    spec: TransformSpec,
    options: RenderOptions,
    quality: int,
    palette: bool,
    force_palette: bool = False,
) -> bytes:
    keep = KEEP_ALL if spec.meta == "keep" else KEEP_NONE
    if fmt == "jpeg":
        preset = _JPEG_PRESETS[options.jpeg_preset]
        return bytes(
            image.jpegsave_buffer(Q=quality, interlace=spec.progressive, keep=keep, **preset)
        )
    if fmt == "webp":
        return bytes(image.webpsave_buffer(Q=quality, keep=keep))
    if fmt == "avif":
        return bytes(
            image.heifsave_buffer(
                Q=quality, compression="av1", effort=options.avif_effort, keep=keep
            )
        )
    if fmt == "gif":
        # Quantisation effort 1: 5x faster than libvips' default 7 for ~7 % more bytes, and
        # GIF is only the fallback for clients that take no WebP.
        return bytes(image.gifsave_buffer(keep=keep, interlace=spec.progressive, effort=1))
    png = {"interlace": spec.progressive, "keep": keep, "compression": 6}
    if spec.quality is not None or force_palette:
        # An explicit q asks for lossy palette quantisation, as pngquant does.
        return bytes(image.pngsave_buffer(palette=True, Q=quality, **png))
    full = bytes(image.pngsave_buffer(**png))
    if not palette:
        return full
    # A palette source (GIF, 8-bit PNG) usually stays within 256 colours: keep the
    # palette form when it is the smaller file.
    indexed = bytes(image.pngsave_buffer(palette=True, Q=100, **png))
    return indexed if len(indexed) < len(full) else full
