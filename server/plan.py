"""Validated processing steps -> a Plan: one pipeline stage per geometric op (a TransformSpec
the delivery steps already know), and the encoding, decided by the last op that names one.
Pure: nothing here touches pixels; imaging/chain.py runs the Plan.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from server.errors import InvalidParam, NotAvailable
from server.imagerefs import Ref
from server.imaging.watermark import Watermark
from server.ops import OPS, POSITIONS
from server.spec import Box, Format, Limits, TransformSpec


@dataclass(frozen=True, slots=True)
class Stage:
    """One geometric step: a TransformSpec the delivery steps run, or a smart crop whose
    window depends on the size the previous stage left."""

    op: str
    spec: TransformSpec = field(default_factory=TransformSpec)
    aspect: tuple[float, float] | None = None
    width: int | None = None  # smart_crop: resize to this width after the crop
    target: str = "saliency"  # smart_crop: "face" keeps the detected faces
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
    matte: tuple[int, int, int, int] | None = None  # background_remove's, for JPEG only
    progressive: bool = False
    keep_metadata: bool = False  # EXIF/XMP/IPTC of the source written into the result

    def canonical(self, fmt: Format, marks: Mapping[int, str]) -> str:
        """The effective work, as a stable string: equal plans on equal bytes are one result.
        `marks` holds each watermark image's content hash by stage index."""
        parts = [f"fmt={fmt}", f"q={self.quality}", f"tb={self.target_bytes}"]
        parts += [f"orient={self.auto_orient}", f"bg={self.background}", f"matte={self.matte}"]
        if self.progressive or self.keep_metadata:  # absent when off: old result ids hold
            parts.append(f"progressive={self.progressive} keep={self.keep_metadata}")
        for index, stage in enumerate(self.stages):
            parts.append(repr(replace(stage, mark=None)) + f"@{marks.get(index, '-')}")
        return hashlib.sha256("\n".join(parts).encode()).hexdigest()


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
    if "progressive" in p:
        plan = replace(plan, progressive=p["progressive"])
    if "keep_metadata" in p:
        plan = replace(plan, keep_metadata=p["keep_metadata"])
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
    # A box that is only a bound (inside, never enlarged) may be larger: the output stays
    # within the source and geometry.plan's limits whatever the box.
    bound = p.get("fit") == "inside" and not p.get("enlarge", False)
    if width and height and width * height > limits.max_pixels and not bound:
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
    w, _, h = p["aspect"].partition(":")
    aspect = (float(w), float(h))
    if aspect[0] <= 0 or aspect[1] <= 0 or not 0.01 <= aspect[0] / aspect[1] <= 100:
        where = _at(path, "aspect")
        raise InvalidParam(where, f"{where} needs W and H above 0, within 1:100..100:1")
    width = _side(p, "width", limits, path)
    stage = Stage("smart_crop", aspect=aspect, width=width, target=p.get("target", "saliency"))
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
        position=POSITIONS[p.get("position", "bottom-right")],
        opacity=p.get("opacity", 0.5),
        scale=p.get("scale", 0.25),
        margin=p.get("margin", 16),
        color=color[:3],
    )
    return Stage("watermark", watermark=mark, mark=p.get("watermark_image")), plan


def _blur(plan: Plan, p: dict[str, Any], limits: Limits, path: str) -> tuple[Stage, Plan]:
    return Stage("blur", TransformSpec(blur=round(p["sigma"], 3))), plan


def _face_blur(plan: Plan, p: dict[str, Any], limits: Limits, path: str) -> tuple[Stage, Plan]:
    return Stage("face_blur", TransformSpec(blur_faces=round(p.get("sigma", 12.0), 3))), plan


def _sharpen(plan: Plan, p: dict[str, Any], limits: Limits, path: str) -> tuple[Stage, Plan]:
    return Stage("sharpen", TransformSpec(sharpen=round(p["sigma"], 3))), plan


def _trim(plan: Plan, p: dict[str, Any], limits: Limits, path: str) -> tuple[Stage, Plan]:
    return Stage("trim", TransformSpec(trim=p.get("threshold", 10))), plan


def _background_remove(
    plan: Plan, p: dict[str, Any], limits: Limits, path: str
) -> tuple[Stage, Plan]:
    if "background" in p:
        plan = replace(plan, matte=p["background"])
    if plan.fmt is None:  # a cut-out is wanted with its alpha: PNG unless a format is named
        plan = replace(plan, fmt="png")
    return Stage("background_remove", TransformSpec(bg_remove=True)), plan


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
    "face_blur": _face_blur,
    "trim": _trim,
    "background_remove": _background_remove,
}
