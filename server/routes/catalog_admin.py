"""The admin API's operations (SPEC §5), API keys (SPEC §6 "Keys") and the delivery URL
(SPEC §2): rows of the operation table routes/catalog.py assembles."""

from __future__ import annotations

from server.openapi import Operation, Reply
from server.shapes import (
    ANY_OBJECT,
    ASSET,
    ASSET_JSON,
    DELIVERY_QUERY,
    KEY,
    KEY_CREATE,
    KEY_CREATED,
    KEY_PATCH,
    PAGING,
    PURGE,
    PURGE_ANSWER,
    TEMPLATE,
    TEMPLATE_ANSWER,
    URL_ANSWER,
    URLS,
    page,
)

ADMIN_BODY_ERRORS = (400, 413, 415)
DELETED = Reply("Deleted, or was not there (idempotent)")
ASSET_ID = {"id": "the asset id; may contain '/'"}
TEMPLATE_NAME = {"name": "template name"}
KEY_ID = {"id": "key id"}
TINY_PNG = (
    "data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8"
    "z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="
)


def admin() -> list[Operation]:
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


def keys() -> list[Operation]:
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


def delivery() -> list[Operation]:
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
