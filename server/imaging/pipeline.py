"""The render: source (bytes or a file) + TransformSpec -> encoded variant, in a render thread.

The pipeline is an ordered list of steps over one frame; an animation runs the same steps
on each frame. Each step returns early when it has nothing to do, so the common job (a
JPEG shrunk on load, resized, re-encoded) costs what libvips alone would.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pyvips

from server.errors import ImgcdnError, InvalidParam
from server.formats import ALPHA, ANIMATED
from server.imaging import encode, facesteps, geometry
from server.imaging import watermark as wm
from server.imaging.inspect import SourceInfo, header
from server.imaging.options import RenderOptions
from server.imaging.vips import Cancel
from server.imaging.watermark import Watermark
from server.spec import Format, TransformSpec


@dataclass(frozen=True, slots=True)
class Job:
    """What every step may read: the parsed spec, the output format, and the plan."""

    spec: TransformSpec
    fmt: Format
    options: RenderOptions
    shrink: float = 1.0  # loaded size / stored size, for scaling crop boxes
    # The size resize() would see without shrink-on-load (upright, cropped, turned), so
    # libjpeg's rounding of the shrunk size (399 / 2 -> 199) cannot skew the aspect ratio.
    full_size: tuple[int, int] | None = None
    watermark: Watermark | None = None
    mark_source: bytes | None = None  # the watermark asset's bytes
    source_key: Hashable | None = None  # names the source for the face detection cache
    # Written by the face steps (how many faces each used), read by render() for X-Faces:
    # the one mutable part of a Job, shared by the copies replace() makes.
    faces: list[int] = field(default_factory=list)
    frame: bool = False  # a frame of an animation: faces move, so no cached boxes


@dataclass(frozen=True, slots=True)
class Rendered:
    body: bytes
    width: int
    height: int
    frames: int
    faces: int | None = None  # with g=face or blur_faces: how many faces were used


Step = Callable[[pyvips.Image, Job], pyvips.Image]


def render(
    data: bytes | Path,
    info: SourceInfo,
    spec: TransformSpec,
    fmt: Format,
    options: RenderOptions,
    cancel: Cancel,
    watermark: Watermark | None = None,
    mark_source: bytes | None = None,
    source_key: Hashable | None = None,
) -> Rendered:
    animate = info.frames > 1 and spec.anim is not False and fmt in ANIMATED
    image, shrink, full_size = open_source(data, info, spec, options, cancel, animate)
    job = Job(
        spec,
        fmt,
        options,
        shrink=shrink,
        full_size=full_size,
        watermark=watermark,
        mark_source=mark_source,
        source_key=source_key,
    )
    try:
        if animate:
            # Content-aware crops would pick a different window per frame and make it jitter.
            if spec.gravity in ("smart", "entropy", "face"):
                job = replace(job, spec=replace(spec, gravity="center"))
            job = replace(job, frame=True)
            out = render_frames(image, lambda frame: run_steps(frame, job, STEPS), cancel)
        else:
            out = run_steps(image, job, STEPS, cancel)
        body = encode.encode(cancel.watch(out), fmt, spec, options, palette=info.palette)
    except pyvips.Error as exc:
        if cancel.cancelled:
            raise  # the pool has answered 504 already
        # The source decoded in full when it was uploaded, so a failure here is ours: a 500
        # that is logged with its cause, not a 4xx that blames the client.
        raise ImgcdnError(f"render failed: {last_line(exc)}") from exc
    frames = int(out.get("n-pages")) if animate else 1
    height = out.height // frames if animate else out.height
    faces = job.faces[-1] if job.faces else None
    return Rendered(body=body, width=out.width, height=height, frames=frames, faces=faces)


def open_source(
    data: bytes | Path,
    info: SourceInfo,
    spec: TransformSpec,
    options: RenderOptions,
    cancel: Cancel,
    animate: bool,
    **extra: Any,
) -> tuple[pyvips.Image, float, tuple[int, int] | None]:
    """The source, shrunk on load as far as `spec` allows: the lazy image, its shrink
    (loaded / stored width, for crop boxes) and the full size resize() should plan from."""
    factor = _load_factor(info, spec, options, animate)
    load: dict[str, Any] = {"access": _access(info, spec), **extra}
    if factor > 1 and info.kind == "jpeg":
        load["shrink"] = factor
    elif factor > 1 and info.kind == "webp":
        load["scale"] = 1 / factor
    if animate:
        load["n"] = -1
    image = cancel.watch(header(data, info.kind, **load))
    stored_width = info.height if info.orientation in (5, 6, 7, 8) else info.width
    full_size = _full_size(info, spec) if factor > 1 else None
    return image, image.width / stored_width, full_size


def _load_factor(
    info: SourceInfo, spec: TransformSpec, options: RenderOptions, animate: bool
) -> int:
    """Shrink-on-load factor: only for JPEG/WebP stills, and not when trim must see full pixels."""
    if info.kind not in ("jpeg", "webp") or animate or spec.trim is not None:
        return 1
    width, height = _full_size(info, spec)
    p = geometry.plan(
        (width, height),
        spec.target,
        spec.effective_fit,
        spec.enlarge,
        options.max_side,
        options.max_pixels,
    )
    return geometry.shrink_factor((width, height), p.scaled, options.shrink_rule)


def _access(info: SourceInfo, spec: TransformSpec) -> str:
    """Sequential (streamed top to bottom, the cheap way) unless a step reads rows out of
    order: a turn, a vertical flip or EXIF auto-orientation. libvips hides out-of-order
    reads only while the image fits its line cache, so small tests would not show this."""
    turns = spec.rot % 360 != 0 or info.orientation != 1
    if turns or (spec.flip is not None and "v" in spec.flip):
        return "random"
    return "sequential"


def _full_size(info: SourceInfo, spec: TransformSpec) -> tuple[int, int]:
    """The upright source size after crop and quarter turns, in source pixels."""
    width, height = info.width, info.height
    if spec.crop is not None:
        width = max(1, min(spec.crop.w, width - spec.crop.x))
        height = max(1, min(spec.crop.h, height - spec.crop.y))
    if int(spec.rot % 360 // 90) % 2:
        width, height = height, width
    return width, height


def run_steps(
    image: pyvips.Image, job: Job, steps: tuple[Step, ...], cancel: Cancel | None = None
) -> pyvips.Image:
    for step in steps:
        image = step(image, job)
        if cancel is not None:
            image = cancel.watch(image)
    return image


def render_frames(
    image: pyvips.Image, per_frame: Callable[[pyvips.Image], pyvips.Image], cancel: Cancel
) -> pyvips.Image:
    """`per_frame` over each frame of an animation, joined back with its timing kept."""
    page_height = int(image.get("page-height"))
    count = image.height // page_height
    frames = []
    for index in range(count):
        frames.append(per_frame(image.crop(0, index * page_height, image.width, page_height)))
    out = cancel.watch(pyvips.Image.arrayjoin(frames, across=1))
    out = out.copy()
    out.set_type(pyvips.GValue.gint_type, "page-height", frames[0].height)
    out.set_type(pyvips.GValue.gint_type, "n-pages", count)
    for name in ("delay", "loop"):
        if name in image.get_fields():
            out.set_type(image.get_typeof(name), name, image.get(name))
    return out


def to_srgb(image: pyvips.Image, job: Job) -> pyvips.Image:
    # Convert while the image is small (after shrink-on-load) and before any resampling,
    # so resizing and blending happen in the colours the browser will show.
    if "icc-profile-data" in image.get_fields():
        try:
            image = image.icc_transform("srgb", embedded=True, intent="perceptual")
        except pyvips.Error:
            image = image.colourspace("srgb")  # a broken profile: fall back to the defaults
    elif image.interpretation not in ("srgb", "b-w"):
        target = "b-w" if image.interpretation in ("grey16", "b-w") else "srgb"
        image = image.colourspace(target)
    if image.format != "uchar":
        image = (
            image.cast("uchar")
            if image.format == "char"
            else image.colourspace("b-w" if image.bands <= 2 else "srgb")
        )
    return image


def autorot(image: pyvips.Image, job: Job) -> pyvips.Image:
    if "orientation" not in image.get_fields() or image.get("orientation") == 1:
        return image
    return image.autorot()


def crop(image: pyvips.Image, job: Job) -> pyvips.Image:
    box = job.spec.crop
    if box is None:
        return image
    # After autorot: clients give crop boxes in the upright frame they see, in source
    # pixels, so scale them to the shrunk-on-load size.
    s = job.shrink
    x, y = round(box.x * s), round(box.y * s)
    if x >= image.width or y >= image.height:
        raise InvalidParam(
            "crop",
            f"crop starts outside the {round(image.width / s)}x{round(image.height / s)} image",
        )
    w = max(1, min(round(box.w * s), image.width - x))
    h = max(1, min(round(box.h * s), image.height - y))
    return image.crop(x, y, w, h)


def trim(image: pyvips.Image, job: Job) -> pyvips.Image:
    if job.spec.trim is None:
        return image
    image = image.copy_memory()  # find_trim reads every pixel; the crop reads them again
    flat = image.flatten(background=[255] * (image.bands - 1)) if image.hasalpha() else image
    left, top, width, height = flat.find_trim(
        threshold=job.spec.trim, background=flat.getpoint(0, 0)
    )
    if width == 0 or height == 0:
        return image  # one uniform colour: nothing to keep, so keep it all
    return image.crop(left, top, width, height)


def rotate90(image: pyvips.Image, job: Job) -> pyvips.Image:
    # Quarter turns are lossless and happen before sizing, so w and h describe the result.
    quarter = int(job.spec.rot % 360 // 90)
    if not quarter:
        return image
    return image.rot(("d0", "d90", "d180", "d270")[quarter])


def flip(image: pyvips.Image, job: Job) -> pyvips.Image:
    if job.spec.flip is None:
        return image
    if "h" in job.spec.flip:
        image = image.fliphor()
    if "v" in job.spec.flip:
        image = image.flipver()
    return image


def resize(image: pyvips.Image, job: Job) -> pyvips.Image:
    spec, opts = job.spec, job.options
    p = geometry.plan(
        job.full_size or (image.width, image.height),
        spec.target,
        spec.effective_fit,
        spec.enlarge,
        opts.max_side,
        opts.max_pixels,
    )
    cover = p.box != p.scaled and p.box[0] <= p.scaled[0] and p.box[1] <= p.scaled[1]
    framing = cover and spec.gravity == "face"
    # Framing needs the faces that matter, not every small one: tiles only if none. It looks
    # at the resized image when that holds all the detector sees, so the source is decoded
    # once, streamed into the resize as for g=smart; a smaller thumbnail is searched first.
    late = framing and max(p.scaled) >= facesteps.framing_side()
    found = None
    if framing and not late:
        image = image.copy_memory()  # detection reads every pixel; the resize reads them again
        found = facesteps.find(image, job, tiles=False)
    detected_width = image.width
    if p.scaled != (image.width, image.height):
        alpha = image.hasalpha()
        if alpha:
            image = image.premultiply()  # or transparent pixels' colour bleeds into edges
        image = image.resize(
            p.scaled[0] / image.width, vscale=p.scaled[1] / image.height, kernel="lanczos3"
        )
        if alpha:
            image = image.unpremultiply().cast("uchar")
    if p.box == p.scaled:
        return image
    if late:
        image = image.copy_memory()  # detection reads every pixel; the crop reads them again
        found = facesteps.find(image, job, tiles=False)
        detected_width = image.width
    if found:
        return facesteps.cover_on_faces(image, job, found, image.width / detected_width, p.box)
    if cover:
        return _cover(image, job, p.box)
    return _pad(image, job, p.box)


def _cover(image: pyvips.Image, job: Job, box: tuple[int, int]) -> pyvips.Image:
    gravity = job.spec.gravity
    if gravity in ("smart", "entropy", "face"):  # face: none found, so the smart crop
        image = image.copy_memory()  # smartcrop scores the pixels, then crops them
        return image.smartcrop(
            box[0], box[1], interesting="entropy" if gravity == "entropy" else "attention"
        )
    x, y = geometry.gravity_offset(gravity, job.spec.focal, (image.width, image.height), box)
    return image.crop(x, y, box[0], box[1])


def _pad(image: pyvips.Image, job: Job, box: tuple[int, int]) -> pyvips.Image:
    image, background = _with_background(image, job)
    x, y = geometry.pad_offset((image.width, image.height), box)
    return image.embed(x, y, box[0], box[1], extend="background", background=background)


def rotate_free(image: pyvips.Image, job: Job) -> pyvips.Image:
    angle = job.spec.rot % 90
    if not angle:
        return image
    image, background = _with_background(image, job)
    image = image.rotate(angle, background=background)
    # The turned image's bounding box can outgrow the output limits (8192 wide at 45
    # degrees is 11585): scale it back inside them, as plan() does for everything else.
    opts = job.options
    fits = min(
        1.0,
        opts.max_side / max(image.width, image.height),
        (opts.max_pixels / (image.width * image.height)) ** 0.5,
    )
    return image if fits >= 1.0 else image.resize(fits * (1 - 1e-6), kernel="lanczos3")


def blur(image: pyvips.Image, job: Job) -> pyvips.Image:
    if job.spec.blur is None:
        return image
    return image.gaussblur(job.spec.blur).cast("uchar")


def sharpen(image: pyvips.Image, job: Job) -> pyvips.Image:
    if job.spec.sharpen is None:
        return image
    # sharpen works on the L of LabS: come back to the space we were in.
    before = image.interpretation
    image = image.sharpen(sigma=job.spec.sharpen)
    return image if image.interpretation == before else image.colourspace(before)


def remove_background(image: pyvips.Image, job: Job) -> pyvips.Image:
    # After resize: the mask is found on the sized image, so a thumbnail costs a thumbnail.
    if not job.spec.bg_remove:
        return image
    from server.vision import background  # OpenCV loads only where a cut-out is asked for

    return background.cut_out(image, job.options.bg_model or None)


def watermark(image: pyvips.Image, job: Job) -> pyvips.Image:
    # On the sized output, so the mark's scale and margin are in the pixels people see.
    if job.watermark is None:
        return image
    return wm.apply(image, job.watermark, job.mark_source)


def flatten(image: pyvips.Image, job: Job) -> pyvips.Image:
    if not image.hasalpha():
        return image
    bg = job.spec.bg
    # JPEG cannot carry alpha; an opaque bg asks for a flat result in any format.
    if job.fmt in ALPHA and (bg is None or bg[3] < 255):
        return image
    rgb = list(bg[:3]) if bg else [255, 255, 255]
    return image.flatten(background=rgb if image.bands > 2 else [rgb[0]]).cast("uchar")


def _with_background(image: pyvips.Image, job: Job) -> tuple[pyvips.Image, list[float]]:
    """The fill colour for padding and rotation, adding alpha when the fill is transparent."""
    bg = job.spec.bg
    transparent_default = bg is None and image.hasalpha()
    rgba = [0, 0, 0, 0] if transparent_default else list(bg or (255, 255, 255, 255))
    wants_alpha = rgba[3] < 255 and job.fmt in ALPHA
    if wants_alpha and not image.hasalpha():
        image = image.bandjoin_const([255])
    colour = rgba[:3] if image.bands >= 3 else rgba[:1]
    if image.hasalpha():
        # Keep the default fill transparent even for JPEG: flatten() then paints it the same
        # colour as the image's own transparent pixels.
        colour = [*colour, rgba[3] if (wants_alpha or transparent_default) else 255]
    return image, [float(c) for c in colour]


def last_line(exc: pyvips.Error) -> str:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return lines[-1][:200] if lines else "unknown error"


STEPS: tuple[Step, ...] = (
    to_srgb,
    autorot,
    crop,
    trim,
    rotate90,
    flip,
    facesteps.blur_faces,
    resize,
    remove_background,
    rotate_free,
    blur,
    sharpen,
    watermark,
    flatten,
)
