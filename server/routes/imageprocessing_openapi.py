"""Seed 000's paths in /v1/openapi.json: its two endpoints, their fields (the very Obj the
handlers validate with) and its envelopes. routes/docs.py adds them to the generated
document; they live outside /v1/, so the catalog's routed-means-described rule skips them."""

from __future__ import annotations

from typing import Any

from server.routes import imageprocessing_request as seed
from server.schema import Obj, Schema

_STRING = {"type": "string"}
_INT = {"type": "integer"}
_SIZE = {
    "type": "object",
    "properties": {"width": _INT, "height": _INT},
    "required": ["width", "height"],
}
_GROUPS = {"type": "object", "properties": {name: {"type": "object"} for name in seed.GROUPS}}
ERROR: Schema = {
    "type": "object",
    "description": "Seed 000's error envelope; `error` is imgcdn's code, `details` its message",
    "properties": {
        "success": {"const": False},
        "error": _STRING,
        "details": _STRING,
        "param": {"type": ["string", "null"], "description": "the field at fault"},
        "correlationId": _STRING,
        "timestamp": {"type": "string", "format": "date-time"},
    },
    "required": ["success", "error", "details", "correlationId", "timestamp"],
}


def _envelope(data: Schema) -> Schema:
    return {
        "type": "object",
        "properties": {
            "success": {"const": True},
            "data": data,
            "processingTime": {"type": "integer", "description": "milliseconds"},
            "timestamp": {"type": "string", "format": "date-time"},
            "correlationId": _STRING,
        },
        "required": ["success", "data", "processingTime", "timestamp", "correlationId"],
    }


PROCESSED = _envelope(
    {
        "type": "object",
        "properties": {
            "processed_image": {"type": "string", "contentEncoding": "base64"},
            "image_url": {"type": "string", "description": "the result, signed, for a while"},
            "size_bytes": _INT,
            "original_size_bytes": _INT,
            "dimensions": _SIZE,
            "format_info": {"type": "object"},
            "compression_ratio": {"type": "number", "description": "original / result bytes"},
            "quality_used": {"type": ["integer", "null"]},
            "operations": {"type": "array", "items": _STRING},
            "metadata": _GROUPS,
        },
        "required": ["processed_image", "size_bytes", "dimensions", "format_info"],
    }
)
METADATA = _envelope(
    {
        "type": "object",
        "properties": {
            "size_bytes": _INT,
            "dimensions": _SIZE,
            "format_info": {"type": "object"},
            "metadata": _GROUPS,
        },
        "required": ["size_bytes", "dimensions", "format_info", "metadata"],
    }
)
HEADERS = {
    "X-Processing-Time": {"schema": {"type": "string", "pattern": "^[0-9]+ms$"}},
    "X-Correlation-ID": {
        "schema": _STRING,
        "description": "the client's, else a new id (32 hex digits)",
    },
}
ERRORS = {
    400: "A field is missing, malformed or out of range (`param` names it)",
    401: "No key, or an unknown one",
    403: "Key disabled, expired or without the scope; a source URL refused",
    404: "No such operation (the message lists them)",
    409: "The same Idempotency-Key is still running",
    413: "The image is over the byte or pixel limit",
    415: "Not an image imgcdn reads, or a body that is neither JSON nor multipart",
    422: "The image cannot be decoded, or an Idempotency-Key reused",
    429: "Rate limit or daily quota (`Retry-After`)",
    503: "A dependency is down (`Retry-After`)",
}


def openapi_paths() -> dict[str, Any]:
    """The `paths` entries of seed 000's endpoints."""
    single = _post(
        "Seed 000: one operation on one image",
        seed.SINGLE,
        {"anyOf": [PROCESSED, METADATA]},
    )
    single["parameters"] = [
        {
            "name": "operation",
            "in": "path",
            "required": True,
            "schema": {"type": "string", "enum": list(seed.ENDPOINTS)},
        },
        {"name": "response", "in": "query", "required": False, "schema": seed.RESPONSE.schema()},
    ]
    return {
        "/api/v1/image-processing/{operation}": {"post": single},
        "/image-processing": {
            "post": _post("Seed 000: an operations pipeline on one image", seed.PIPELINE, PROCESSED)
        },
    }


def _post(summary: str, body: Obj, answer: Schema) -> dict[str, Any]:
    form = {name: _STRING for name in body.fields}
    form["image"] = {"type": "string", "contentMediaType": "application/octet-stream"}
    error = {"content": {"application/json": {"schema": ERROR}}}
    return {
        "operationId": "post_" + summary.split(": ")[1].replace(" ", "_"),
        "summary": summary,
        "tags": ["seed 000"],
        "security": [{"apiKeyQuery": []}, {"bearer": []}, {"apiKeyHeader": []}],
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {"schema": body.schema()},
                "multipart/form-data": {
                    "schema": {"type": "object", "properties": form},
                    "encoding": {"image": {"contentType": "image/*"}},
                },
            },
        },
        "responses": {
            "200": {
                "description": "The image bytes (default), or the JSON envelope when asked",
                "headers": HEADERS,
                "content": {
                    "image/*": {"schema": {"type": "string", "contentMediaType": "image/*"}},
                    "application/json": {"schema": answer},
                },
            },
            **{str(status): {"description": text, **error} for status, text in ERRORS.items()},
        },
    }
