"""Processing-API ops (SPEC §6) -> a validated Plan of steps on the delivery engine. Pure.

Each op is declared once (`OPS`): its params as schema fields, which the single-op endpoint,
the `process` steps and /v1/openapi.json all use. `compile_ops` turns validated steps into a
Plan: one pipeline stage per geometric op (a TransformSpec the delivery steps already know),
and the encoding, decided by the last op that names one. Nothing here touches pixels.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from server.errors import InvalidParam, NotAvailable
from server.imagerefs import REF, Ref
from server.imaging.watermark import MAX_MARGIN, MAX_TEXT, Watermark
from server.schema import Bool, Choice, Custom, Field, Int, Number, Obj, Text
from server.spec import FORMATS, Box, Format, Limits, TransformSpec

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
_POSITIONS = {
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
            target=Choice(("saliency", "face"), "what to keep (face needs the vision engine)"),
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
                tuple(_POSITIONS),
                "where the mark sits (default bottom-right)",
                aliases={k.replace("-", "_"): k for k in _POSITIONS if "-" in k},
            ),
            opacity=Number(0, 1, "0 transparent .. 1 opaque (default 0.5)"),
            scale=Number(0.01, 1, "mark width / image width (default 0.25)"),
            margin=Int(0, MAX_MARGIN, "pixels from the edges (default 16)"),
            color=COLOR,
        ),
        _op("blur", "Gaussian blur", ("sigma",), sigma=Number(0.3, 100, "blur radius")),
        _op("sharpen", "Unsharp mask", ("sigma",), sigma=Number(0.3, 10, "sharpen radius")),
        _op("trim", "Cut away a uniform border", threshold=Int(1, 100, "default 10")),
        replace(
            _op("background_remove", "Cut out the subject (vision)", background=COLOR),
            available=False,
        ),
        replace(_op("face_blur", "Blur every face (vision)"), available=False),
    )
}

# Every op also takes the encoding (a single-op endpoint's body pasted into a step works).
ENCODING: dict[str, Field] = {"format": FORMAT, "quality": QUALITY}


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


@dataclass(frozen=True, slots=True)
class Stage:
    """One geometric step: a TransformSpec the delivery steps run, or a smart crop whose
    window depends on the size the previous stage left."""

    op: str
    spec: TransformSpec = field(default_factory=TransformSpec)
    aspect: tuple[float, float] | None = None
    width: int | None = None  # smart_crop: resize to this width after the crop
    watermark: Watermark | None = None
    mark: Ref | None = None  # the watermark image, resolved by the route before rendering


@dataclass(frozen=True, slots=True)
class Plan:
    stages: tuple[Stage, ...]
    fmt: Format | None = None  # None: the source's own kind
    quality: int | None = None
    target_bytes: int | None = None
    auto_orient: bool = True
    background: tuple[int, int, int, int] | None = None  # flattening colour for JPEG

    def canonical(self, fmt: Format, marks: Mapping[int, str]) -> str:
        """The effective work, as a stable string: equal plans on equal bytes are one result.
        `marks` holds each watermark image's content hash by stage index."""
        parts = [f"fmt={fmt}", f"q={self.quality}", f"tb={self.target_bytes}"]
        parts += [f"orient={self.auto_orient}", f"bg={self.background}"]
        for index, stage in enumerate(self.stages):
            parts.append(repr(replace(stage, mark=None)) + f"@{marks.get(index, '-')}")
        return hashlib.sha256("\n".join(parts).encode()).hexdigest()


def check_step(raw: object, index: int) -> tuple[str, dict[str, Any]]:
    """One `process` step -> (op, params), validated, errors naming ops[i]..."""
    path = f"ops[{index}]"
    step = STEP.check(raw, path)
    params = step.get("params", {})
    if not isinstance(params, dict):
        raise InvalidParam(f"{path}.params", f"{path}.params must be a JSON object")
    return step["op"], STEP_PARAMS[step["op"]].check(params, f"{path}.params")


def compile_ops(steps: list[tuple[str, dict[str, Any]]], limits: Limits, paths: list[str]) -> Plan:
    """Validated steps -> Plan. `paths[i]` is how step i's params are named in errors
    (`ops[2].params` in process, `` at a single-op endpoint's top level)."""
    plan = Plan(stages=())
    for (name, params), path in zip(steps, paths, strict=True):
        plan = _add(plan, name, params, limits, path)
    return plan


def _at(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def _add(plan: Plan, name: str, p: dict[str, Any], limits: Limits, path: str) -> Plan:
    if not OPS[name].available:
        raise NotAvailable(
            f"{name} needs the vision engine, which is not in this install yet",
            param=_at(path, "op") if path else None,
        )
    if "format" in p:
        plan = replace(plan, fmt=p["format"])
    if "quality" in p:
        plan = replace(plan, quality=max(1, p["quality"]))
    builder = _BUILDERS.get(name)
    if builder is None:  # compress / convert: encoding only
        if name == "compress" and "target_bytes" in p:
            plan = replace(plan, target_bytes=p["target_bytes"])
        return plan
    stage, plan = builder(plan, p, limits, path)
    return replace(plan, stages=(*plan.stages, stage))


Builder = Callable[[Plan, dict[str, Any], Limits, str], tuple[Stage, Plan]]


def _side(p: dict[str, Any], name: str, limits: Limits, path: str) -> int | None:
    value: int | None = p.get(name)
    if value is not None and value > limits.max_side:
        where = _at(path, name)
        raise InvalidParam(where, f"{where} must be at most {limits.max_side}, got {value}")
    return value


def _resize(plan: Plan, p: dict[str, Any], limits: Limits, path: str) -> tuple[Stage, Plan]:
    width, height = _side(p, "width", limits, path), _side(p, "height", limits, path)
    if width is None and height is None:
        where = _at(path, "width")
        raise InvalidParam(where, f"resize needs {where} or {_at(path, 'height')} (or both)")
    if width is not None and height is not None and width * height > limits.max_pixels:
        where = _at(path, "width")
        raise InvalidParam(where, f"width x height must be at most {limits.max_pixels} pixels")
    both = width is not None and height is not None
    spec = TransformSpec(
        width=width,
        height=height,
        # Written out only where it matters, so equal work has one key.
        fit=p.get("fit", "cover") if both else None,
        enlarge=p.get("enlarge", False),
        bg=p.get("background"),
    )
    return Stage("resize", spec), _background(plan, p)


def _crop(plan: Plan, p: dict[str, Any], limits: Limits, path: str) -> tuple[Stage, Plan]:
    box = Box(p["x"], p["y"], p["width"], p["height"])
    return Stage("crop", TransformSpec(crop=box)), plan


def _smart_crop(plan: Plan, p: dict[str, Any], limits: Limits, path: str) -> tuple[Stage, Plan]:
    if p.get("target") == "face":
        raise NotAvailable(
            "smart_crop target=face needs face detection, which is not in this install yet;"
            " use target=saliency",
            param=_at(path, "target"),
        )
    w, _, h = p["aspect"].partition(":")
    aspect = (float(w), float(h))
    if aspect[0] <= 0 or aspect[1] <= 0 or not 0.01 <= aspect[0] / aspect[1] <= 100:
        where = _at(path, "aspect")
        raise InvalidParam(where, f"{where} needs W and H above 0, within 1:100..100:1")
    stage = Stage("smart_crop", aspect=aspect, width=_side(p, "width", limits, path))
    return stage, plan


def _rotate(plan: Plan, p: dict[str, Any], limits: Limits, path: str) -> tuple[Stage, Plan]:
    degrees = round(p["degrees"] % 360, 2) % 360
    if p.get("auto_orient") is False:
        plan = replace(plan, auto_orient=False)
    stage = Stage("rotate", TransformSpec(rot=degrees, bg=p.get("background")))
    return stage, _background(plan, p)


def _flip(plan: Plan, p: dict[str, Any], limits: Limits, path: str) -> tuple[Stage, Plan]:
    return Stage("flip", TransformSpec(flip=p["direction"])), plan


def _watermark(plan: Plan, p: dict[str, Any], limits: Limits, path: str) -> tuple[Stage, Plan]:
    if ("text" in p) == ("watermark_image" in p):
        where = _at(path, "text")
        raise InvalidParam(where, "watermark needs exactly one of text or watermark_image")
    if "color" in p and "text" not in p:
        where = _at(path, "color")
        raise InvalidParam(where, f"{where} applies to text watermarks only")
    color = p.get("color", (255, 255, 255, 255))
    mark = Watermark(
        asset="(image)" if "watermark_image" in p else None,
        text=p.get("text"),
        position=_POSITIONS[p.get("position", "bottom-right")],
        opacity=p.get("opacity", 0.5),
        scale=p.get("scale", 0.25),
        margin=p.get("margin", 16),
        color=color[:3],
    )
    return Stage("watermark", watermark=mark, mark=p.get("watermark_image")), plan


def _blur(plan: Plan, p: dict[str, Any], limits: Limits, path: str) -> tuple[Stage, Plan]:
    return Stage("blur", TransformSpec(blur=round(p["sigma"], 3))), plan


def _sharpen(plan: Plan, p: dict[str, Any], limits: Limits, path: str) -> tuple[Stage, Plan]:
    return Stage("sharpen", TransformSpec(sharpen=round(p["sigma"], 3))), plan


def _trim(plan: Plan, p: dict[str, Any], limits: Limits, path: str) -> tuple[Stage, Plan]:
    return Stage("trim", TransformSpec(trim=p.get("threshold", 10))), plan


def _background(plan: Plan, p: dict[str, Any]) -> Plan:
    # The last colour a step names also fills what JPEG cannot keep transparent.
    return replace(plan, background=p["background"]) if "background" in p else plan


_BUILDERS: dict[str, Builder] = {
    "resize": _resize,
    "crop": _crop,
    "smart_crop": _smart_crop,
    "rotate": _rotate,
    "flip": _flip,
    "watermark": _watermark,
    "blur": _blur,
    "sharpen": _sharpen,
    "trim": _trim,
}
