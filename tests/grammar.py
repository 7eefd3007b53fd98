"""The SPEC §2 delivery URL as hypothesis strategies, written from the SPEC, not from
server/spec.py: query values inside the grammar (with the field each one sets), values
outside it, the ways a query string can be spelled, and hostile id segments. Shared by
the property tests."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

from hypothesis import strategies as st

MAX_SIDE = 8192
MAX_EXP = 253_402_300_799  # 9999-12-31T23:59:59Z
GRAVITIES = ("center", "n", "s", "e", "w", "ne", "nw", "se", "sw", "smart", "entropy")
FORMATS = ("auto", "jpeg", "jpg", "png", "webp", "avif", "gif")
# Digits that str.isdigit, float() or a unicode-aware \d accept and the SPEC does not.
FOREIGN_DIGITS = ("\u0660", "\u06f5", "\u0967", "\uff15", "\u00b2", "\U0001d7dd")


def decimal_text(scaled: int, places: int) -> str:
    """`scaled` / 10**places written with exactly `places` decimals (none when 0)."""
    sign = "-" if scaled < 0 else ""
    whole, frac = divmod(abs(scaled), 10**places)
    return f"{sign}{whole}.{frac:0{places}d}" if places else f"{sign}{whole}"


def decimals(lo: float, hi: float, max_places: int) -> st.SearchStrategy[str]:
    """Decimal numbers in lo..hi with up to `max_places` decimals, spelled every legal way
    (trailing zeros kept or not)."""

    @st.composite
    def build(draw: st.DrawFn) -> str:
        places = draw(st.integers(0, max_places))
        scale = 10**places
        scaled = draw(st.integers(math.ceil(lo * scale), math.floor(hi * scale)))
        return decimal_text(scaled, places)

    return build()


def ints(lo: int, hi: int) -> st.SearchStrategy[str]:
    return st.one_of(st.sampled_from([lo, hi]), st.integers(lo, hi)).map(str)


def _fraction() -> st.SearchStrategy[str]:
    """0..1 as clients print it: decimals, and the exponent form Python and JavaScript use
    for small numbers (str(0.00005) is '5e-05')."""
    exponent = st.tuples(st.integers(1, 9), st.integers(5, 12), st.sampled_from("eE"))
    return st.one_of(
        st.sampled_from(["0", "1", "0.5", "1.0", "0.25", "0.30000000000000004"]),
        decimals(0, 1, 6),
        exponent.map(lambda t: f"{t[0]}{t[2]}-{t[1]:02d}"),
    )


FOCAL = st.tuples(_fraction(), _fraction()).map(lambda xy: f"fp:{xy[0]},{xy[1]}")


def _crop() -> st.SearchStrategy[str]:
    offset, side = st.integers(0, 999_999), st.integers(1, 999_999)
    return st.tuples(offset, offset, side, side).map(lambda t: ",".join(map(str, t)))


VALID: dict[str, st.SearchStrategy[str]] = {
    "w": ints(1, MAX_SIDE),
    "h": ints(1, MAX_SIDE),
    "dpr": decimals(1, 4, 2),
    "fit": st.sampled_from(["cover", "contain", "inside", "outside", "fill"]),
    "enlarge": st.sampled_from(["0", "1"]),
    "g": st.one_of(st.sampled_from(GRAVITIES), FOCAL),
    "crop": _crop(),
    "rot": decimals(-360, 360, 2),
    "flip": st.sampled_from(["h", "v", "hv"]),
    "fmt": st.sampled_from(FORMATS),
    "q": ints(1, 100),
    "maxbytes": ints(1024, 50_000_000),
    "bg": st.from_regex(r"[0-9A-Fa-f]{6}([0-9A-Fa-f]{2})?", fullmatch=True),
    "blur": decimals(0.3, 100, 3),
    "sharpen": decimals(0.3, 10, 3),
    "blur_faces": decimals(0.3, 100, 3),
    "trim": ints(1, 100),
    "meta": st.sampled_from(["strip", "keep"]),
    "progressive": st.sampled_from(["0", "1"]),
    "anim": st.sampled_from(["0", "1"]),
    "bg_remove": st.sampled_from(["0", "1"]),
    "v": st.from_regex(r"[A-Za-z0-9._-]{1,64}", fullmatch=True),
    "exp": ints(0, MAX_EXP),
    "sig": st.from_regex(r"[A-Za-z0-9_-]{1,128}", fullmatch=True),
}
NAMES = tuple(VALID)


def _foreign(valid: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    """A valid value with one ASCII digit swapped for a digit of another script."""

    @st.composite
    def build(draw: st.DrawFn) -> str:
        value = draw(valid.filter(lambda v: any(c.isdigit() for c in v)))
        at = draw(st.sampled_from([i for i, c in enumerate(value) if c.isdigit()]))
        return value[:at] + draw(st.sampled_from(FOREIGN_DIGITS)) + value[at + 1 :]

    return build()


def _mangled(valid: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    """A valid value made invalid in a way every parameter refuses."""
    return st.one_of(
        st.just(""),
        valid.map(lambda v: f" {v}"),
        valid.map(lambda v: f"{v} "),
        valid.map(lambda v: f"{v}\n"),
        valid.map(lambda v: f"{v}\x00"),
        valid.map(lambda v: v + v[-1] + "\u0301"),  # a combining accent on the last character
    )


_NUMBER_JUNK = st.sampled_from(
    ["nan", "NaN", "inf", "-inf", "Infinity", "1e2", "1E0", "0x10", "+1", ".5", "5.", "1_0", "--1"]
)


def _numeric_invalid(lo: float, hi: float, places: int) -> st.SearchStrategy[str]:
    scale = 10 ** (places + 1)
    too_precise = st.integers(math.ceil(lo * scale), math.floor(hi * scale)).filter(
        lambda n: n % 10 != 0
    )
    beyond = st.one_of(
        st.floats(max_value=lo, exclude_max=True, allow_nan=False, allow_infinity=False),
        st.floats(min_value=hi, exclude_min=True, allow_nan=False, allow_infinity=False),
    ).map(lambda f: f"{f:.{places}f}".rstrip("0").rstrip("."))
    return st.one_of(
        _NUMBER_JUNK,
        too_precise.map(lambda n: decimal_text(n, places + 1)),
        beyond.filter(lambda v: not lo <= float(v) <= hi),
    )


def _int_invalid(lo: int, hi: int) -> st.SearchStrategy[str]:
    return st.one_of(
        _NUMBER_JUNK,
        st.integers(max_value=lo - 1).map(str),
        st.integers(min_value=hi + 1).map(str),
        ints(lo, hi).map(lambda v: f"{v}.0"),
        st.just("9" * 40),
    )


_GRAVITY_INVALID = st.one_of(
    st.sampled_from(
        [
            *("CENTER", "north", "fp:", "fp:0.5", "fp:0.5,0.5,0.5", "fp:nan,0.5", "fp:inf,0"),
            *("fp:0.5;0.5", "fp:1.5,0", "fp:0,-0.1", "fp:0x1,0", "fp:1_0,0", "fp:.5,0", "fp:5.,0"),
            *("fp: 0.5,0.5", "fp:0.5 ,0.5", "fp:-0,0", "fp:+0.5,0.5"),
        ]
    ),
    _foreign(FOCAL),
)


def _choice_invalid(options: tuple[str, ...]) -> st.SearchStrategy[str]:
    return st.one_of(
        st.sampled_from(options).map(str.upper).filter(lambda v: v not in options),
        st.sampled_from(options).map(lambda v: v + "x"),
        st.text(max_size=8).filter(lambda v: v not in options),
    )


INVALID: dict[str, st.SearchStrategy[str]] = {
    "w": _int_invalid(1, MAX_SIDE),
    "h": _int_invalid(1, MAX_SIDE),
    "dpr": _numeric_invalid(1, 4, 2),
    "fit": _choice_invalid(("cover", "contain", "inside", "outside", "fill")),
    "enlarge": _choice_invalid(("0", "1")),
    "g": _GRAVITY_INVALID,
    "crop": st.sampled_from(
        [
            *("1,2,3", "1,2,3,4,5", "0,0,0,1", "0,0,1,0", "-1,0,1,1", "1.5,0,1,1"),
            *("0,0,1234567,1", ",,,", "0,0,1,1,", "0;0;1;1", "0, 0, 1, 1"),
        ]
    ),
    "rot": _numeric_invalid(-360, 360, 2),
    "flip": _choice_invalid(("h", "v", "hv")),
    "fmt": _choice_invalid(FORMATS),
    "q": _int_invalid(1, 100),
    "maxbytes": _int_invalid(1024, 50_000_000),
    "bg": st.one_of(
        st.sampled_from(["fff", "#ff0000", "ff00001", "gg0000", "ff00ff00ff", "0x0000"]),
        VALID["bg"]
        .map(lambda v: v.replace("f", "\uff46").replace("F", "\uff26"))
        .filter(lambda v: not v.isascii()),
    ),
    "blur": _numeric_invalid(0.3, 100, 3),
    "sharpen": _numeric_invalid(0.3, 10, 3),
    "blur_faces": _numeric_invalid(0.3, 100, 3),
    "trim": _int_invalid(1, 100),
    "meta": _choice_invalid(("strip", "keep")),
    "progressive": _choice_invalid(("0", "1")),
    "anim": _choice_invalid(("0", "1")),
    "bg_remove": _choice_invalid(("0", "1")),
    "v": st.one_of(
        st.just("x" * 65),
        st.from_regex(r"[A-Za-z0-9._-]{0,8}[/~+ é!%&=][A-Za-z0-9._-]{0,8}", fullmatch=True),
    ),
    "exp": _int_invalid(0, MAX_EXP),
    "sig": st.one_of(
        st.just("A" * 129),
        st.from_regex(r"[A-Za-z0-9_-]{0,8}[=+/.~][A-Za-z0-9_-]{0,8}", fullmatch=True),
    ),
}
for _name in NAMES:
    INVALID[_name] = st.one_of(INVALID[_name], _mangled(VALID[_name]))
for _name in (
    "w",
    "h",
    "dpr",
    "crop",
    "rot",
    "q",
    "maxbytes",
    "blur",
    "sharpen",
    "blur_faces",
    "trim",
    "exp",
):
    INVALID[_name] = st.one_of(INVALID[_name], _foreign(VALID[_name]))

# Id segments that must never reach a store: dot segments percent-encoded once, twice or
# three times, encoded slashes, backslashes, NUL and control characters, fullwidth and
# leader dots, overlong UTF-8, lone surrogates; and a few that only look odd.
HOSTILE = [
    ".", "..", "...", "%2e", "%2E%2e", ".%2e", "%252e%252e", "%25252e%25252e", "%2525252e",
    "%2f", "%2F", "%252f", "a%2fb", "%5c", "%255c", "\\", "..\\..", "%00", "%2500", "%0a",
    "%250d", "%7f", "%c2%85", "\x00", "\n", "\x85", "\u2028", "\ufeff", "\u202e",
    "\uff0e", "\uff0e\uff0e", "\u2025", "\u2024", "\ufe19", "\uff0e%2e", "\uff0f", "\uff3c",
    "..\uff0f..", "%ef%bc%8e%ef%bc%8e", "%c0%ae%c0%ae", "%c0%af", "%e0%80%ae", "%ff", "%", "%%",
    "%2", "\ud800", "\udfff", "e\u0301", "\u00e9",
]  # fmt: skip

# What each valid value sets on TransformSpec: (field, raw -> expected value).
FIELDS: dict[str, tuple[str, Callable[[str], Any]]] = {
    "w": ("width", int),
    "h": ("height", int),
    "dpr": ("dpr", float),
    "fit": ("fit", str),
    "enlarge": ("enlarge", lambda v: v == "1"),
    "rot": ("rot", float),
    "flip": ("flip", str),
    "fmt": ("fmt", lambda v: "jpeg" if v == "jpg" else v),
    "q": ("quality", int),
    "maxbytes": ("maxbytes", int),
    "bg": ("bg", lambda v: tuple(bytes.fromhex(v if len(v) == 8 else f"{v}ff"))),
    "blur": ("blur", float),
    "sharpen": ("sharpen", float),
    "blur_faces": ("blur_faces", float),
    "trim": ("trim", int),
    "meta": ("meta", str),
    "progressive": ("progressive", lambda v: v == "1"),
    "anim": ("anim", lambda v: v == "1"),
    "bg_remove": ("bg_remove", lambda v: v == "1"),
    "v": ("version", str),
    "exp": ("exp", int),
    "sig": ("sig", str),
}

# Characters a query must percent-encode for a value to mean itself.
_RESERVED = "&=+%#;"


@st.composite
def encoded(draw: st.DrawFn, text: str) -> str:
    """`text` as a query component: reserved characters always percent-encoded, any other
    character sometimes (as its UTF-8 bytes, in either hex case)."""
    out = []
    for char in text:
        if char in _RESERVED or not char.isprintable() or draw(st.integers(0, 9)) == 0:
            escaped = quote(char, safe="")
            if escaped == char:  # quote leaves unreserved characters as they are
                escaped = f"%{ord(char):02X}"
            out.append(escaped.lower() if draw(st.booleans()) else escaped)
        else:
            out.append(char)
    return "".join(out)


@st.composite
def query(draw: st.DrawFn, pairs: list[tuple[str, str]]) -> str:
    """`pairs` as a query string, each name and value encoded by `encoded`."""
    parts = [f"{draw(encoded(name))}={draw(encoded(value))}" for name, value in pairs]
    return "&".join(parts)


@st.composite
def valid_pairs(draw: st.DrawFn, names: tuple[str, ...] = NAMES) -> list[tuple[str, str]]:
    """A few distinct parameters with values inside the grammar, in any order, sig last."""
    chosen = draw(st.lists(st.sampled_from(names), unique=True, max_size=6))
    chosen.sort(key=lambda n: n == "sig")
    return [(name, draw(VALID[name])) for name in chosen]


def any_value(name: str) -> st.SearchStrategy[str]:
    return st.one_of(VALID[name], INVALID[name]) if name in VALID else st.text(max_size=12)
