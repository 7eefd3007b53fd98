"""Seed 002's asset, URL and transformation operations (SPEC §6 "Assets and URLs"): rows of
the operation table routes/catalog.py assembles, with the bodies their handlers check."""

from __future__ import annotations

from server.openapi import Operation, Reply
from server.routes import image_assets, image_urls
from server.routes.catalog_admin import TINY_PNG
from server.schema import Bool, Obj
from server.shapes import ASSET, PAGING, described, page
from server.transforms import TRANSFORM

# What these calls can be answered besides success (SPEC §4, §6 "Keys").
ERRORS = (400, 401, 403, 404, 409, 413, 415, 422, 429, 503)
IMAGE_ASSET = Obj(
    {**ASSET.fields, "filename": described({"type": "string"}, "as sent, when sent")},
    ASSET.required,
    "A stored image (seed 002's ImageAsset, a superset)",
    title="ImageAsset",
)
_TEXT = described({"type": "string"})
TRANSFORMATION = Obj(
    {"id": _TEXT, "name": _TEXT, "transform": TRANSFORM, "created_at": _TEXT},
    frozenset({"id", "name", "transform", "created_at"}),
    "A named transform: a template, usable as /t/{name}/{id}",
    title="ImageTransformation",
)
URL = Obj({"url": _TEXT}, frozenset({"url"}), "A delivery URL", title="ImageUrl")
SIGNED = Obj(
    {"url": _TEXT, "expires_at": described({"type": "string"}, "RFC 3339, UTC")},
    frozenset({"url", "expires_at"}),
    "A signed delivery URL and when it expires",
    title="SignedImageUrl",
)
OK = Obj({"ok": Bool()}, frozenset({"ok"}), "Done (also when there was nothing to do)", title="Ok")
ID = {"id": "the image id (an asset id; may contain '/')"}


def images() -> list[Operation]:
    def row(method: str, path: str, summary: str, scope: str, **kw: object) -> Operation:
        return Operation(
            method, f"/v1/image/{path}", summary, "images", "key", scope=scope,
            errors=ERRORS, **kw,  # type: ignore[arg-type]
        )  # fmt: skip

    return [
        row(
            "POST",
            "upload",
            "Store an image under the key's prefix",
            "image.upload",
            body=image_assets.BODIES["upload"],
            form=True,
            replies={200: Reply("Stored", IMAGE_ASSET)},
            example={"file": TINY_PNG},
        ),
        row(
            "GET",
            "get/{id:anypath}",
            "Describe a stored image",
            "image.read",
            params=ID,
            replies={200: Reply("The image", IMAGE_ASSET)},
        ),
        row(
            "GET",
            "list",
            "List the key's images",
            "image.read",
            query=PAGING,
            replies={200: Reply("A page of images", page("ImageAssetPage", IMAGE_ASSET))},
        ),
        row(
            "DELETE",
            "delete/{id:anypath}",
            "Delete a stored image and its variants",
            "image.delete",
            params=ID,
            body=image_assets.BODIES["delete/{id}"],
            replies={200: Reply("Deleted, or was not there (idempotent)", OK)},
        ),
        row(
            "POST",
            "deliver_url",
            "A delivery URL for a stored image through a transform",
            "image.urls",
            body=image_urls.BODIES["deliver_url"],
            replies={200: Reply("", URL)},
        ),
        row(
            "POST",
            "signed_url",
            "A signed, expiring delivery URL",
            "image.urls",
            body=image_urls.BODIES["signed_url"],
            replies={200: Reply("", SIGNED)},
        ),
        row(
            "POST",
            "transformation/create",
            "Name a transform (a template)",
            "image.transformations",
            body=image_urls.BODIES["transformation/create"],
            replies={200: Reply("Created", TRANSFORMATION)},
        ),
        row(
            "GET",
            "transformation/list",
            "List named transforms",
            "image.transformations",
            query=PAGING,
            replies={200: Reply("A page", page("ImageTransformationPage", TRANSFORMATION))},
        ),
    ]
