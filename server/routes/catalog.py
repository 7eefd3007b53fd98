"""Every operation of the HTTP API: what it takes, who may call it, what it answers.

One row per (method, route path as app.py routes it). /v1/openapi.json is generated from
this table and the app's routes (server/openapi.py); the processing API's rows take their
bodies from routes/processing.py BODIES, the objects its handlers validate with.
"""

from __future__ import annotations

from dataclasses import replace

from server.openapi import Operation, Reply
from server.ops import OPS, STEP, STEP_PARAMS
from server.routes.catalog_admin import TINY_PNG, admin, delivery, keys
from server.routes.catalog_batch import batch
from server.routes.catalog_correction import correction
from server.routes.catalog_images import images
from server.routes.processing import BODIES, OCR_BODY, RETURN
from server.schema import Choice, Obj
from server.shapes import METADATA, MODERATION, OCR_RESULT, PROCESSED_BASE64, PROCESSED_IMAGE

# What a processing request can be answered besides its result (SPEC §4, §6).
PROCESSING_ERRORS = (400, 404, 409, 413, 415, 422, 429, 501, 503, 504)
RESULT = Reply(
    "The result: ProcessedImage (default), base64 (`return=base64`), or the image bytes "
    "(`return=binary`, or `Accept: image/*` without application/json)",
    json=(PROCESSED_IMAGE, PROCESSED_BASE64),
    image=True,
)


def _processing() -> list[Operation]:
    ops = [
        Operation(
            "POST",
            f"/v1/image/{name}",
            op.summary + ("" if op.available else " (answers 501 until §9's vision engine)"),
            "processing",
            "key",
            scope="image.process",
            body=BODIES[name],
            form=True,
            query={"return": RETURN},
            replies={200: RESULT},
            errors=PROCESSING_ERRORS,
        )
        for name, op in OPS.items()
    ]
    ops.append(
        Operation(
            "POST",
            "/v1/image/process",
            "Run ops in order; encode once at the end",
            "processing",
            "key",
            scope="image.process",
            body=BODIES["process"],
            form=True,
            query={"return": RETURN},
            replies={200: RESULT},
            errors=PROCESSING_ERRORS,
            example={
                "image": TINY_PNG,
                "ops": [
                    {"op": "resize", "params": {"width": 1}},
                    {"op": "flip", "params": {"direction": "h"}},
                ],
                "format": "webp",
            },
        )
    )
    ops.append(
        Operation(
            "POST",
            "/v1/image/metadata",
            "Size, format and EXIF of an image",
            "processing",
            "key",
            scope="image.metadata",
            body=BODIES["metadata"],
            form=True,
            replies={200: Reply("The metadata", json=METADATA)},
            errors=PROCESSING_ERRORS,
            example={"image": TINY_PNG},
        )
    )
    ops.append(
        Operation(
            "POST",
            "/v1/image/moderate",
            "P(NSFW) of an image, from Yahoo's Open-NSFW model (vision §9)",
            "processing",
            "key",
            scope="image.process",
            body=BODIES["moderate"],
            form=True,
            replies={200: Reply("The scores", json=MODERATION)},
            errors=PROCESSING_ERRORS,
            example={"image": TINY_PNG},
        )
    )
    ops.append(
        Operation(
            "POST",
            "/v1/image/ocr",
            "Text of an image: lines with boxes and confidences, in reading order (§9)",
            "processing",
            "key",
            scope="image.process",
            body=OCR_BODY,
            form=True,
            replies={200: Reply("The text", json=OCR_RESULT)},
            errors=PROCESSING_ERRORS,
            example={"image": TINY_PNG, "language": "eng"},
        )
    )
    later = ["tag"]
    for path in later:
        for method in ("GET", "POST"):
            ops.append(
                Operation(
                    method,
                    f"/v1/image/{path}",
                    "Not in this version: answers 501 not_available (vision §9)",
                    "later",
                    "public",
                    errors=(501,),
                )
            )
    return ops


def _steps() -> tuple[Obj, ...]:
    """Each op as a `process` step: {"op": name, "params": its params}, as check_step reads it."""
    return tuple(
        Obj(
            {
                "op": Choice((name,), op.summary),
                "params": replace(STEP_PARAMS[name], title=f"{name}_params"),
            },
            frozenset({"op"}),
            title=f"{name}_step",
        )
        for name, op in OPS.items()
    )


# Components documented as one of finer objects (see server/openapi.py Components).
REFINED = {STEP.title or "Step": _steps()}
OPERATIONS: tuple[Operation, ...] = (
    *_processing(),
    *batch(),
    *images(),
    *admin(),
    *keys(),
    *delivery(),
    *correction(),
)
