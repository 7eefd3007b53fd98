"""Processing-API ops (SPEC §6), each declared once: its params as schema fields, which the
single-op endpoint, the `process` steps and /v1/openapi.json all use. Pure.

plan.py compiles validated steps into the Plan imaging/chain.py runs.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from server.errors import InvalidParam
from server.imagerefs import REF
from server.imaging.watermark import MAX_MARGIN, MAX_TEXT
from server.schema import Bool, Choice, Custom, Field, Int, Number, Obj, Text
from server.spec import FORMATS

MAX_STEPS = 32
MAX_COORD = 1_000_000


def _color(value: object, path: str, text: bool) -> tuple[int, int, int, int]:
    raw = value.lstrip("#") if isinstance(value, str) else ""
    try:
        rgba = bytes.fromhex(raw) if len(raw) in (6, 8) else b""
    except ValueError:
        rgba = b""
    if not rgba:
        raise InvalidParam(path, f"{path} must be a hex colour RRGGBB or RRGGBBAA, got {value!r}")
    return rgba[0], rgba[1], rgba[2], rgba[3] if len(rgba) == 4 else 255


COLOR = Custom(
    _color,
    {"type": "string", "pattern": "^#?[0-9A-Fa-f]{6}([0-9A-Fa-f]{2})?$"},
    "a hex colour, RRGGBB or RRGGBBAA (alpha 00 is transparent)",
)
FORMAT = Choice(FORMATS, "output format", aliases={"jpg": "jpeg"})
QUALITY = Int(0, 100, "encoder quality; 0 is read as 1, libvips' lowest")
SIDE = 65_500  # the largest IMGCDN_MAX_OUTPUT_SIDE; a request sees its server's (schema.CAPS)
POSITIONS = {
    "top-left": "nw",
    "top-right": "ne",
    "bottom-left": "sw",
    "bottom-right": "se",
    "center": "center",
}


@dataclass(frozen=True)
class Op:
    name: str
    params: Obj
    summary: str
    available: bool = True  # False: answered 501 not_available (its engine is §9's)


def _op(name: str, summary: str, required: tuple[str, ...] = (), **fields: Field) -> Op:
    return Op(name, Obj(fields, frozenset(required)), summary)


OPS: dict[str, Op] = {
    op.name: op
    for op in (
        _op(
            "resize",
            "Resize within, to cover, or to exactly a box",
            width=Int(1, SIDE, "target width in pixels", cap="output_side"),
            height=Int(1, SIDE, "target height in pixels", cap="output_side"),
            fit=Choice(
                ("inside", "cover", "contain", "fill", "outside"),
                "cover (the default with both sides) crops; contain pads; fill stretches",
            ),
            enlarge=Bool("allow upscaling past the source size (default false)"),
            background=COLOR,
        ),
        _op(
            "crop",
            "Cut a box out of the image (pixels of the image as the previous step left it)",
            ("x", "y", "width", "height"),
            x=Int(0, MAX_COORD, "left edge"),
            y=Int(0, MAX_COORD, "top edge"),
            width=Int(1, MAX_COORD, "box width"),
            height=Int(1, MAX_COORD, "box height"),
        ),
        _op(
            "smart_crop",
            "Crop to an aspect ratio around the most interesting region",
            ("aspect",),
            aspect=Text(
                23, "W:H, e.g. 16:9", r"[0-9]{1,5}(\.[0-9]{1,2})?:[0-9]{1,5}(\.[0-9]{1,2})?", "W:H"
            ),
            target=Choice(
                ("saliency", "face"), "what to keep: face keeps the detected faces, else saliency"
            ),
            width=Int(1, SIDE, "then resize to this width", cap="output_side"),
        ),
        _op(
            "rotate",
            "Rotate clockwise by any angle",
            ("degrees",),
            degrees=Number(-1e6, 1e6, "clockwise; taken modulo 360"),
            auto_orient=Bool("apply the EXIF orientation first (default true)"),
            background=COLOR,
        ),
        _op(
            "flip",
            "Mirror the image",
            ("direction",),
            direction=Choice(
                ("h", "v", "hv"),
                "h mirrors left-right, v top-bottom",
                aliases={"horizontal": "h", "vertical": "v", "both": "hv"},
            ),
        ),
        _op(
            "compress",
            "Re-encode at a quality, or at the best quality within target_bytes",
            quality=QUALITY,
            target_bytes=Int(1024, 50_000_000, "largest acceptable result in bytes"),
        ),
        _op("convert", "Change the format", ("format",)),
        _op(
            "watermark",
            "Stamp text or an image onto the image",
            text=Text(MAX_TEXT, "a line of text"),
            watermark_image=REF,
            position=Choice(
                tuple(POSITIONS),
                "where the mark sits (default bottom-right)",
                aliases={k.replace("-", "_"): k for k in POSITIONS if "-" in k},
            ),
            opacity=Number(0, 1, "0 transparent .. 1 opaque (default 0.5)"),
            scale=Number(0.01, 1, "mark width / image width (default 0.25)"),
            margin=Int(0, MAX_MARGIN, "pixels from the edges (default 16)"),
            color=COLOR,
        ),
        _op("blur", "Gaussian blur", ("sigma",), sigma=Number(0.3, 100, "blur radius")),
        _op("sharpen", "Unsharp mask", ("sigma",), sigma=Number(0.3, 10, "sharpen radius")),
        _op("trim", "Cut away a uniform border", threshold=Int(1, 100, "default 10")),
        _op(
            "background_remove",
            "Cut out the subject: alpha in PNG/WebP/AVIF, else over background (vision)",
            background=COLOR,
        ),
        _op(
            "face_blur",
            "Blur every detected face beyond recognition (vision)",
            sigma=Number(0.3, 100, "blur sigma in pixels (default 12); at least 1/6 of each face"),
        ),
    )
}

# Every op also takes the encoding (a single-op endpoint's body pasted into a step works).
ENCODING: dict[str, Field] = {
    "format": FORMAT,
    "quality": QUALITY,
    "progressive": Bool("progressive JPEG / interlaced PNG and GIF (default false)"),
    "keep_metadata": Bool(
        "keep the source's EXIF (GPS included), XMP and IPTC; orientation is applied "
        "(default false: stripped)"
    ),
}


def step_fields(op: Op) -> Obj:
    """A `process` step's params, or a single-op endpoint's own fields: the op's + encoding."""
    return replace(op.params, fields={**op.params.fields, **ENCODING}, description="")


STEP_PARAMS: dict[str, Obj] = {name: step_fields(op) for name, op in OPS.items()}
STEP = Obj(
    {
        "op": Choice(tuple(OPS), "the operation"),
        "params": Custom(
            lambda v, p, t: v,
            {"type": "object", "description": "the op's params (see each op's endpoint)"},
        ),
    },
    frozenset({"op"}),
    title="Step",
)


def check_step(raw: object, index: int, within: str = "") -> tuple[str, dict[str, Any]]:
    """One `process` step -> (op, params), validated, errors naming ops[i]... (after
    `within`, e.g. `items[3].` for a batch item's steps)."""
    path = f"{within}ops[{index}]"
    step = STEP.check(raw, path)
    params = step.get("params", {})
    if not isinstance(params, dict):
        raise InvalidParam(f"{path}.params", f"{path}.params must be a JSON object")
    return step["op"], STEP_PARAMS[step["op"]].check(params, f"{path}.params")
