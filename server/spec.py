"""Delivery URLs -> TransformSpec, and the canonical key two equal URLs share. Pure: no I/O.

One parser serves URLs (and later templates), so a parameter means the same wherever it is
written. Every value is checked here, once; the pipeline trusts the frozen result.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Literal
from urllib.parse import parse_qsl

from server.errors import InvalidParam

Fit = Literal["cover", "contain", "inside", "outside", "fill"]
Format = Literal["jpeg", "png", "webp", "avif", "gif"]
FORMATS: tuple[Format, ...] = ("jpeg", "png", "webp", "avif", "gif")
# jpg: the file extension people type, kept as a name for jpeg (the same output and key).
FMT_VALUES = ("auto", "jpeg", "jpg", "png", "webp", "avif", "gif")
FITS = ("cover", "contain", "inside", "outside", "fill")
GRAVITIES = ("center", "n", "s", "e", "w", "ne", "nw", "se", "sw", "smart", "entropy", "face")
DEFAULT_QUALITY: dict[Format, int] = {"jpeg": 80, "webp": 80, "avif": 55}
LOSSY: frozenset[Format] = frozenset({"jpeg", "webp", "avif"})

_VERSION = re.compile(r"[A-Za-z0-9._-]{1,64}")
_INTEGER = re.compile(r"-?[0-9]+")
_NUMBER = re.compile(r"-?[0-9]+(?:\.([0-9]+))?")
# A fraction as clients print one: decimals, or the exponent form of small numbers
# (Python's str(0.00005) is "5e-05"). ASCII only, no sign, no "nan": float() takes more.
_FRACTION = re.compile(r"\d{1,32}(\.\d{1,32})?([eE]-?\d{1,3})?", re.ASCII)
_HEX = re.compile(r"[0-9A-Fa-f]{6}([0-9A-Fa-f]{2})?")
_B64URL = re.compile(r"[A-Za-z0-9_-]{1,128}")
# 9999-12-31T23:59:59Z: the last second an Expires header (and datetime) can write.
MAX_EXP = 253_402_300_799


@dataclass(frozen=True, slots=True)
class Limits:
    max_side: int = 8192
    max_pixels: int = 40_000_000


@dataclass(frozen=True, slots=True)
class Box:
    x: int
    y: int
    w: int
    h: int


@dataclass(frozen=True, slots=True)
class TransformSpec:
    """One variant's transform, as parsed. Sizes are CSS pixels; `target` applies dpr."""

    width: int | None = None
    height: int | None = None
    dpr: float = 1.0
    fit: Fit | None = None
    enlarge: bool = False
    gravity: str = "center"
    focal: tuple[float, float] | None = None
    crop: Box | None = None
    rot: float = 0.0
    flip: Literal["h", "v", "hv"] | None = None
    fmt: Format | Literal["auto"] | None = None
    quality: int | None = None
    maxbytes: int | None = None
    bg: tuple[int, int, int, int] | None = None
    blur: float | None = None
    blur_faces: float | None = None  # sigma; every detected face blurred (server/vision)
    sharpen: float | None = None
    trim: int | None = None
    meta: Literal["strip", "keep"] = "strip"
    progressive: bool = False
    anim: bool | None = None
    version: str | None = None
    exp: int | None = None
    sig: str | None = None
    bg_remove: bool = False  # SPEC §9: the subject kept, its background transparent

    @property
    def target(self) -> tuple[int | None, int | None]:
        """The box in device pixels: w and h times dpr."""
        w = round(self.width * self.dpr) if self.width is not None else None
        h = round(self.height * self.dpr) if self.height is not None else None
        return w, h

    @property
    def effective_fit(self) -> Fit:
        if self.fit is not None:
            return self.fit
        return "cover" if self.width is not None and self.height is not None else "inside"

    def canonical(self, fmt: Format) -> str:
        """The effective transform for output `fmt` as a stable string.

        Equal effective transforms give equal strings whatever the URL's parameter order,
        spelling (w=400&dpr=2 is w=800) or defaults written out (q=80 for jpeg)."""
        tw, th = self.target
        fit = self.effective_fit
        parts: dict[str, str] = {"fmt": fmt}
        if tw is not None:
            parts["w"] = str(tw)
        if th is not None:
            parts["h"] = str(th)
        if (tw is not None or th is not None) and self.enlarge:
            parts["enlarge"] = "1"
        if tw is not None and th is not None:
            # With one side only, every fit mode is `inside`: the key must not split them.
            parts["fit"] = fit
            if fit == "cover":
                parts["g"] = (
                    f"fp:{self.focal[0]:g},{self.focal[1]:g}" if self.focal else self.gravity
                )
        if self.crop is not None:
            parts["crop"] = f"{self.crop.x},{self.crop.y},{self.crop.w},{self.crop.h}"
        if self.rot % 360:
            parts["rot"] = f"{self.rot % 360:g}"
        if self.flip:
            parts["flip"] = self.flip
        if fmt in LOSSY:
            parts["q"] = str(self.quality or DEFAULT_QUALITY[fmt])
        elif fmt == "png" and self.quality is not None:
            parts["q"] = str(self.quality)
        for name, value in (
            ("maxbytes", self.maxbytes),
            ("blur", self.blur),
            ("blur_faces", self.blur_faces),
            ("sharpen", self.sharpen),
            ("trim", self.trim),
            ("v", self.version),
        ):
            if value is not None:
                parts[name] = f"{value:g}" if isinstance(value, float) else str(value)
        if self.bg is not None:
            parts["bg"] = "{:02x}{:02x}{:02x}{:02x}".format(*self.bg)
        if self.meta == "keep":
            parts["meta"] = "keep"
        if self.progressive:
            parts["progressive"] = "1"
        if self.anim is False:
            parts["anim"] = "0"
        if self.bg_remove:
            parts["bg_remove"] = "1"
        return "&".join(f"{k}={parts[k]}" for k in sorted(parts))


def query_pairs(query: str) -> dict[str, str]:
    """A query string as name -> value. An unknown or repeated parameter is a 400 naming it."""
    seen: dict[str, str] = {}
    try:
        pairs = parse_qsl(query, keep_blank_values=True, strict_parsing=False)
    except ValueError as exc:
        raise InvalidParam("query", f"malformed query string: {exc}") from None
    for name, value in pairs:
        if name in seen:
            raise InvalidParam(name, f"{name} is given more than once")
        if name not in _PARSERS:
            raise InvalidParam(name, f"unknown parameter {name!r}")
        seen[name] = value
    if "sig" in seen and pairs[-1][0] != "sig":
        raise InvalidParam("sig", "sig must be the last parameter")
    return seen


def parse_params(params: Mapping[str, str], limits: Limits) -> TransformSpec:
    """Validated parameters -> TransformSpec: the one parser for URLs and templates alike."""
    values: dict[str, object] = {}
    for name, raw in params.items():
        parser = _PARSERS.get(name)
        if parser is None:
            raise InvalidParam(name, f"unknown parameter {name!r}")
        values.update(parser(raw, limits))
    spec = TransformSpec(**values)  # type: ignore[arg-type]  # keys come from _PARSERS
    return _check_output(spec, limits)


def parse_query(query: str, limits: Limits) -> TransformSpec:
    """Parse a delivery query string. An unknown or repeated parameter is a 400 naming it."""
    return parse_params(query_pairs(query), limits)


def _check_output(spec: TransformSpec, limits: Limits) -> TransformSpec:
    tw, th = spec.target
    for name, value in (("w", tw), ("h", th)):
        if value is not None and value > limits.max_side:
            raise InvalidParam(
                "dpr", f"{name} x dpr must be at most {limits.max_side}, got {value}"
            )
    if tw is not None and th is not None and tw * th > limits.max_pixels:
        raise InvalidParam(
            "w", f"w x h x dpr² must be at most {limits.max_pixels} pixels, got {tw * th}"
        )
    return spec


# Each check below names the one rule a value breaks: "dpr=1.255" is a number in 1..4, so
# saying so would send the reader looking for the wrong mistake.


def _int_in(name: str, raw: str, lo: int, hi: int) -> int:
    if not _INTEGER.fullmatch(raw):
        raise InvalidParam(
            name, f"{name} must be an integer written with digits 0-9 only, got {raw!r}"
        )
    digits = raw.lstrip("-").lstrip("0") or "0"
    # Every integer parameter is >= 0, so a sign is out of range (-0 too). The length cap
    # keeps int() off megabyte-long digit strings; 13 digits hold 2**40.
    if raw[0] == "-" or len(digits) > 13 or not lo <= int(digits) <= hi:
        raise InvalidParam(name, f"{name} must be an integer in {lo}..{hi}, got {raw!r}")
    return int(digits)


def _float_in(name: str, raw: str, decimals: int, lo: float, hi: float) -> float:
    number = _NUMBER.fullmatch(raw)
    if number is None:  # float() would take "nan", "1e3" and "1_0": the grammar does not
        raise InvalidParam(name, f"{name} must be a decimal number like 1.5, got {raw!r}")
    if not lo <= float(raw) <= hi:
        raise InvalidParam(name, f"{name} must be a number in {lo:g}..{hi:g}, got {raw!r}")
    if len(number.group(1) or "") > decimals:
        raise InvalidParam(name, f"{name} must have at most {decimals} decimals, got {raw!r}")
    return float(raw)


def _choice(
    name: str, raw: str, options: tuple[str, ...], shown: tuple[str, ...] | None = None
) -> str:
    """`raw` if it is one of `options`; else a 400 offering `shown` (every spelling accepted)."""
    if raw not in options:
        offered = ", ".join(shown or options)
        raise InvalidParam(name, f"{name} must be one of {offered}, got {raw!r}")
    return raw


def _flag(name: str, raw: str) -> bool:
    return _choice(name, raw, ("0", "1")) == "1"


def _gravity(raw: str) -> dict[str, object]:
    if raw.startswith("fp:"):
        parts = raw[3:].split(",")
        if len(parts) != 2 or not all(_FRACTION.fullmatch(v) for v in parts):
            raise InvalidParam("g", f"g=fp:X,Y needs two numbers separated by a comma, got {raw!r}")
        x, y = (float(v) for v in parts)
        if not (0 <= x <= 1 and 0 <= y <= 1):
            raise InvalidParam("g", f"g=fp:X,Y needs X and Y in 0..1, got {raw!r}")
        return {"gravity": "fp", "focal": (x, y)}
    return {"gravity": _choice("g", raw, GRAVITIES, shown=(*GRAVITIES, "fp:X,Y"))}


def _crop(raw: str) -> dict[str, object]:
    parts = raw.split(",")
    if len(parts) != 4 or not all(_INTEGER.fullmatch(p) and p[0] != "-" for p in parts):
        raise InvalidParam(
            "crop", f"crop must be X,Y,W,H: four integers (digits 0-9 only), got {raw!r}"
        )
    digits = [p.lstrip("0") or "0" for p in parts]
    if any(len(d) > 6 for d in digits):
        raise InvalidParam("crop", f"crop values must be at most 999999, got {raw!r}")
    x, y, w, h = (int(d) for d in digits)
    if w < 1 or h < 1:
        raise InvalidParam("crop", f"crop W and H must be at least 1, got {raw!r}")
    return {"crop": Box(x, y, w, h)}


def _bg(raw: str) -> dict[str, object]:
    if not _HEX.fullmatch(raw):
        raise InvalidParam("bg", f"bg must be RRGGBB or RRGGBBAA, got {raw!r}")
    rgba = [int(raw[i : i + 2], 16) for i in range(0, len(raw), 2)]
    return {"bg": (*rgba[:3], rgba[3] if len(rgba) == 4 else 255)}


def _fmt(raw: str) -> dict[str, object]:
    value = _choice("fmt", raw, FMT_VALUES)
    return {"fmt": "jpeg" if value == "jpg" else value}


def _regex(name: str, raw: str, pattern: re.Pattern[str], what: str) -> str:
    if not pattern.fullmatch(raw):
        raise InvalidParam(name, f"{name} must be {what}, got {raw[:80]!r}")
    return raw


Parser = Callable[[str, Limits], dict[str, object]]

_PARSERS: dict[str, Parser] = {
    "w": lambda raw, lim: {"width": _int_in("w", raw, 1, lim.max_side)},
    "h": lambda raw, lim: {"height": _int_in("h", raw, 1, lim.max_side)},
    "dpr": lambda raw, lim: {"dpr": _float_in("dpr", raw, 2, 1, 4)},
    "fit": lambda raw, lim: {"fit": _choice("fit", raw, FITS)},
    "enlarge": lambda raw, lim: {"enlarge": _flag("enlarge", raw)},
    "g": lambda raw, lim: _gravity(raw),
    "crop": lambda raw, lim: _crop(raw),
    "rot": lambda raw, lim: {"rot": _float_in("rot", raw, 2, -360, 360)},
    "flip": lambda raw, lim: {"flip": _choice("flip", raw, ("h", "v", "hv"))},
    "fmt": lambda raw, lim: _fmt(raw),
    "q": lambda raw, lim: {"quality": _int_in("q", raw, 1, 100)},
    "maxbytes": lambda raw, lim: {"maxbytes": _int_in("maxbytes", raw, 1024, 50_000_000)},
    "bg": lambda raw, lim: _bg(raw),
    "blur": lambda raw, lim: {"blur": _float_in("blur", raw, 3, 0.3, 100)},
    "sharpen": lambda raw, lim: {"sharpen": _float_in("sharpen", raw, 3, 0.3, 10)},
    "blur_faces": lambda raw, lim: {"blur_faces": _float_in("blur_faces", raw, 3, 0.3, 100)},
    "trim": lambda raw, lim: {"trim": _int_in("trim", raw, 1, 100)},
    "meta": lambda raw, lim: {"meta": _choice("meta", raw, ("strip", "keep"))},
    "progressive": lambda raw, lim: {"progressive": _flag("progressive", raw)},
    "anim": lambda raw, lim: {"anim": _flag("anim", raw)},
    "v": lambda raw, lim: {"version": _regex("v", raw, _VERSION, "1..64 of [A-Za-z0-9._-]")},
    "exp": lambda raw, lim: {"exp": _int_in("exp", raw, 0, MAX_EXP)},
    "sig": lambda raw, lim: {"sig": _regex("sig", raw, _B64URL, "base64url")},
    "bg_remove": lambda raw, lim: {"bg_remove": _flag("bg_remove", raw)},
}

PARAM_NAMES: frozenset[str] = frozenset(_PARSERS)
