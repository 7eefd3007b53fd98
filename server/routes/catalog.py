"""Every operation of the HTTP API: what it takes, who may call it, what it answers.

One row per (method, route path as app.py routes it). /v1/openapi.json is generated from
this table and the app's routes (server/openapi.py); the processing API's rows take their
bodies from routes/processing.py BODIES, the objects its handlers validate with.
"""

from __future__ import annotations

from dataclasses import replace

from server.openapi import Operation, Reply
from server.ops import OPS, STEP, STEP_PARAMS
from server.routes.processing import BODIES, RETURN
from server.schema import Choice, Obj
from server.shapes import (
    ANY_OBJECT,
    ASSET,
    ASSET_JSON,
    DELIVERY_QUERY,
    KEY,
    KEY_CREATE,
    KEY_CREATED,
    KEY_PATCH,
    METADATA,
    PAGING,
    PROCESSED_BASE64,
    PROCESSED_IMAGE,
    PURGE,
    PURGE_ANSWER,
    TEMPLATE,
    TEMPLATE_ANSWER,
    URL_ANSWER,
    URLS,
    page,
)

# What a processing request can be answered besides its result (SPEC §4, §6).
PROCESSING_ERRORS = (400, 404, 409, 413, 415, 422, 429, 501, 503, 504)
ADMIN_BODY_ERRORS = (400, 413, 415)
RESULT = Reply(
    "The result: ProcessedImage (default), base64 (`return=base64`), or the image bytes "
    "(`return=binary`, or `Accept: image/*` without application/json)",
    json=(PROCESSED_IMAGE, PROCESSED_BASE64),
    image=True,
)
DELETED = Reply("Deleted, or was not there (idempotent)")
ASSET_ID = {"id": "the asset id; may contain '/'"}
TEMPLATE_NAME = {"name": "template name"}
KEY_ID = {"id": "key id"}
TINY_PNG = (
    "data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8"
    "z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="
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
    later = ["batch/submit", "batch/status/{id}", "batch/cancel/{id}", "moderate", "ocr", "tag"]
    for path in later:
        for method in ("GET", "POST"):
            ops.append(
                Operation(
                    method,
                    f"/v1/image/{path}",
                    "Not in this version: answers 501 not_available (jobs §8, vision §9)",
                    "later",
                    "public",
                    params={"id": "job id"} if "{id}" in path else {},
                    errors=(501,),
                )
            )
    return ops


def _admin() -> list[Operation]:
    return [
        Operation(
            "POST",
            "/v1/assets",
            "Upload an image; the server picks the id (<prefix><content hash>.<ext>)",
            "assets",
            "admin",
            body=ASSET_JSON,
            raw_image=True,
            query={"prefix": ASSET_JSON.fields["prefix"]},
            replies={201: Reply("Stored", ASSET), 200: Reply("Already stored", ASSET)},
            errors=(*ADMIN_BODY_ERRORS, 403, 422, 503, 504),
            example={"base64": TINY_PNG},
        ),
        Operation(
            "GET",
            "/v1/assets",
            "List assets",
            "assets",
            "admin",
            query={"prefix": ASSET_JSON.fields["prefix"], **PAGING},
            replies={200: Reply("A page of assets", page("AssetPage", ASSET))},
            errors=(400,),
        ),
        Operation(
            "PUT",
            "/v1/assets/{id:anypath}",
            "Upload an image under this id (raw body, or multipart field file)",
            "assets",
            "admin",
            raw_image=True,
            params=ASSET_ID,
            replies={201: Reply("Stored", ASSET), 200: Reply("Replaced", ASSET)},
            errors=(*ADMIN_BODY_ERRORS, 422, 503),
        ),
        Operation(
            "GET",
            "/v1/assets/{id:anypath}",
            "Describe an asset",
            "assets",
            "admin",
            params=ASSET_ID,
            replies={200: Reply("The asset", ASSET)},
            errors=(400, 404, 503),
        ),
        Operation(
            "DELETE",
            "/v1/assets/{id:anypath}",
            "Delete an asset and its variants",
            "assets",
            "admin",
            params=ASSET_ID,
            replies={204: DELETED},
            errors=(400, 503),
        ),
        Operation(
            "GET",
            "/v1/assets/{id:anypath}/original",
            "The original bytes",
            "assets",
            "admin",
            params=ASSET_ID,
            replies={200: Reply("The image as uploaded", image=True)},
            errors=(400, 404, 503),
        ),
        Operation(
            "GET",
            "/v1/templates",
            "List templates",
            "templates",
            "admin",
            query=PAGING,
            replies={200: Reply("A page of templates", page("TemplatePage", TEMPLATE_ANSWER))},
            errors=(400,),
        ),
        Operation(
            "PUT",
            "/v1/templates/{name}",
            "Create or replace a template (its version increases)",
            "templates",
            "admin",
            body=TEMPLATE,
            params=TEMPLATE_NAME,
            replies={
                201: Reply("Created", TEMPLATE_ANSWER),
                200: Reply("Replaced", TEMPLATE_ANSWER),
            },
            errors=(*ADMIN_BODY_ERRORS, 422),
            example={"params": {"w": 400, "fmt": "webp"}, "allow": ["w", "dpr"], "public": True},
        ),
        Operation(
            "GET",
            "/v1/templates/{name}",
            "Read a template",
            "templates",
            "admin",
            params=TEMPLATE_NAME,
            replies={200: Reply("The template", TEMPLATE_ANSWER)},
            errors=(400, 404),
        ),
        Operation(
            "DELETE",
            "/v1/templates/{name}",
            "Delete a template and its variants",
            "templates",
            "admin",
            params=TEMPLATE_NAME,
            replies={204: DELETED},
            errors=(400,),
        ),
        Operation(
            "POST",
            "/v1/urls",
            "A ready delivery URL: versioned, signed when signing keys are set",
            "urls",
            "admin",
            body=URLS,
            replies={200: Reply("The URL", URL_ANSWER)},
            errors=(*ADMIN_BODY_ERRORS, 403, 404),
            example={"id": "photo.jpg", "params": {"w": 400}, "widths": [200, 400]},
        ),
        Operation(
            "POST",
            "/v1/purge",
            "Drop cached variants of an asset or a template",
            "urls",
            "admin",
            body=PURGE,
            replies={200: Reply("Purged", PURGE_ANSWER)},
            errors=ADMIN_BODY_ERRORS,
            example={"id": "photo.jpg"},
        ),
    ]


def _keys() -> list[Operation]:
    """SPEC §6 "Keys". The routes are the keys branch's (routes/keys.py)."""
    return [
        Operation(
            "POST",
            "/v1/keys",
            "Create an API key (its secret is answered once)",
            "keys",
            "admin",
            body=KEY_CREATE,
            replies={201: Reply("The key, with its secret", KEY_CREATED)},
            errors=ADMIN_BODY_ERRORS,
            example={"name": "shop", "rate_per_s": 10, "burst": 20, "scopes": ["image.process"]},
        ),
        Operation(
            "GET",
            "/v1/keys",
            "List API keys",
            "keys",
            "admin",
            query=PAGING,
            replies={200: Reply("A page of keys", page("KeyPage", KEY))},
            errors=(400,),
        ),
        Operation(
            "GET",
            "/v1/keys/{id}",
            "Read a key",
            "keys",
            "admin",
            params=KEY_ID,
            replies={200: Reply("The key", KEY)},
            errors=(404,),
        ),
        Operation(
            "PATCH",
            "/v1/keys/{id}",
            "Disable, re-enable or change a key's limits",
            "keys",
            "admin",
            body=KEY_PATCH,
            params=KEY_ID,
            replies={200: Reply("The key", KEY)},
            errors=(*ADMIN_BODY_ERRORS, 404),
        ),
        Operation(
            "DELETE",
            "/v1/keys/{id}",
            "Delete a key",
            "keys",
            "admin",
            params=KEY_ID,
            replies={204: DELETED},
        ),
    ]


def _delivery() -> list[Operation]:
    return [
        Operation(
            "GET",
            "/t/{template}/{id:anypath}",
            "An image variant (SPEC §2); signed with sig (and exp) unless the template is public",
            "delivery",
            "public",
            params={"template": "template name, or _ for none", **ASSET_ID},
            query=DELIVERY_QUERY,
            replies={
                200: Reply("The image, with ETag, Cache-Control, X-Cache", image=True),
                304: Reply("Not modified (If-None-Match)"),
            },
            errors=(400, 403, 404, 413, 415, 422, 429, 503, 504),
        ),
        Operation(
            "GET",
            "/v1/openapi.json",
            "This document",
            "docs",
            "public",
            replies={200: Reply("OpenAPI 3.1", ANY_OBJECT)},
        ),
    ]


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
OPERATIONS: tuple[Operation, ...] = (*_processing(), *_admin(), *_keys(), *_delivery())
KEY_PATHS = frozenset(op.path for op in _keys())
