"""The processing API's render: a Plan's stages in the order given, encoded once at the end.

Every stage runs the delivery pipeline's own steps (pipeline.STAGE_STEPS) over the image the
previous stage left, so an op means the same pixels in both APIs. Load-time work happens
once: shrink-on-load as far as the first stage allows, the ICC/colour conversion, and the
EXIF auto-orientation (unless a rotate step said `auto_orient: false`); flattening and the
encoder run once, after the last stage. The source was never validated as an upload was, so
a decode failure here is the client's (422 `undecodable`), not a 500.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from dataclasses import replace
from pathlib import Path

import pyvips

from server.errors import MaxBytesUnreachable, TargetUnreachable, Undecodable
from server.formats import ALPHA, ANIMATED
from server.imaging import encode, facesteps, pipeline
from server.imaging.inspect import SourceInfo
from server.imaging.options import RenderOptions
from server.imaging.pipeline import Job, Rendered
from server.imaging.vips import Cancel
from server.plan import Plan, Stage
from server.spec import Format, TransformSpec

STAGE_STEPS: tuple[pipeline.Step, ...] = (
    pipeline.crop,
    pipeline.trim,
    pipeline.rotate90,
    pipeline.flip,
    facesteps.blur_faces,
    pipeline.resize,
    pipeline.remove_background,
    pipeline.rotate_free,
    pipeline.blur,
    pipeline.sharpen,
    pipeline.watermark,
)


def render_chain(
    data: bytes | Path,
    info: SourceInfo,
    plan: Plan,
    fmt: Format,
    options: RenderOptions,
    cancel: Cancel,
    marks: Mapping[int, bytes],
    source_key: Hashable | None = None,
) -> Rendered:
    """Run `plan` on the source; `marks` holds each watermark image's bytes by stage index.
    `source_key` names the source (its sha256) for the face detection cache."""
    animate = info.frames > 1 and fmt in ANIMATED
    first = plan.stages[0] if plan.stages else None
    # Shrink-on-load plans from the first stage's spec; a smart crop's window, or a source
    # left in its stored orientation, is not known to it, so those load at full size.
    shrinkable = first is not None and first.aspect is None and plan.auto_orient
    load_spec = first.spec if first is not None and shrinkable else TransformSpec(trim=1)
    extra: dict[str, object] = {"fail_on": "truncated"}
    if len(plan.stages) > 1 or not shrinkable:
        extra["access"] = "random"  # a later stage may read rows in any order
    try:
        image, shrink, full_size = pipeline.open_source(
            data, info, load_spec, options, cancel, animate, **extra
        )
        out = pipeline.to_srgb(image, _job(TransformSpec(), fmt, options))
        if plan.auto_orient:
            out = pipeline.autorot(out, _job(TransformSpec(), fmt, options))
        else:
            out = _without_orientation(out)

        def stages(frame: pyvips.Image) -> pyvips.Image:
            for index, stage in enumerate(plan.stages):
                job = _stage_job(stage, frame, fmt, options, animate, marks.get(index))
                if source_key is not None and not animate:
                    # Faces found after these stages are the same for any later request.
                    done = tuple(repr(replace(s, mark=None)) for s in plan.stages[:index])
                    job = replace(job, source_key=(source_key, plan.auto_orient, done))
                if index == 0:
                    job = replace(job, shrink=shrink, full_size=full_size)
                frame = pipeline.run_steps(frame, job, _steps(stage), cancel)
            return frame

        out = pipeline.render_frames(out, stages, cancel) if animate else stages(out)
        # A cut-out's colour fills only where the format has no alpha (SPEC §9).
        matte = plan.matte if fmt not in ALPHA else None
        final = _job(TransformSpec(bg=plan.background or matte), fmt, options)
        out = cancel.watch(pipeline.flatten(out, final))
        spec = TransformSpec(
            quality=plan.quality,
            maxbytes=plan.target_bytes,
            progressive=plan.progressive,
            meta="keep" if plan.keep_metadata else "strip",
        )
        body = encode.encode(out, fmt, spec, options, palette=info.palette)
    except MaxBytesUnreachable:
        hint = "resize it smaller first" if fmt != "gif" else "pick a lossy format or resize"
        raise TargetUnreachable(
            f"no quality of {fmt} fits this result in {plan.target_bytes} bytes; {hint}",
            param="target_bytes",
        ) from None
    except pyvips.Error as exc:
        if cancel.cancelled:
            raise
        raise Undecodable(f"the image cannot be processed: {pipeline.last_line(exc)}") from exc
    frames = int(out.get("n-pages")) if animate else 1
    return Rendered(body=body, width=out.width, height=out.height // frames, frames=frames)


def _job(spec: TransformSpec, fmt: Format, options: RenderOptions) -> Job:
    return Job(spec, fmt, options)


def _steps(stage: Stage) -> tuple[pipeline.Step, ...]:
    return (pipeline.resize,) if stage.aspect is not None else STAGE_STEPS


def _stage_job(
    stage: Stage,
    image: pyvips.Image,
    fmt: Format,
    options: RenderOptions,
    animate: bool,
    mark: bytes | None,
) -> Job:
    spec = stage.spec
    if stage.aspect is not None:
        spec = _smart_window(stage, image.width, image.height, animate)
    return Job(spec, fmt, options, watermark=stage.watermark, mark_source=mark)


def _smart_window(stage: Stage, width: int, height: int, animate: bool) -> TransformSpec:
    """The largest W:H window of the current image, kept where libvips' attention score
    is highest, then sized to `stage.width` when given (never enlarged)."""
    assert stage.aspect is not None
    ratio = stage.aspect[0] / stage.aspect[1]
    if width / height > ratio:
        box = (max(1, round(height * ratio)), height)
    else:
        box = (width, max(1, round(width / ratio)))
    if stage.width is not None and stage.width < box[0]:
        box = (stage.width, max(1, round(stage.width / ratio)))
    # Per-frame windows would jitter across an animation: keep one, the centre.
    gravity = "center" if animate else "face" if stage.target == "face" else "smart"
    return TransformSpec(width=box[0], height=box[1], fit="cover", gravity=gravity)


def _without_orientation(image: pyvips.Image) -> pyvips.Image:
    """The pixels as stored, with the EXIF tag that would turn them dropped."""
    if "orientation" not in image.get_fields():
        return image
    image = image.copy()
    image.remove("orientation")
    return image
