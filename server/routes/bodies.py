"""The processing API's request body: JSON fields, or multipart form fields and one image.

Every byte count is checked where the bytes first appear: Content-Length, the streamed
body, each multipart part. JSON is recognised by admin.is_json's rule, as everywhere.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from starlette.datastructures import UploadFile
from starlette.requests import Request

from server.errors import BadRequest, TooLarge
from server.routes.admin import (
    MULTIPART_OVERHEAD,
    is_json,
    media_type,
    parse_form,
    parse_json,
    read_body,
    unsupported_body,
)

FILE_FIELDS = ("image", "file")
MAX_FORM_FIELDS = 64
MAX_JSON_OVERHEAD = 256 * 1024  # the ops and fields around a base64 image


@dataclass(slots=True)
class Body:
    """A request's fields (JSON values, or form text when `text`) and its uploaded image."""

    fields: dict[str, Any]
    text: bool = False  # multipart form: every value is a string to read per its field
    upload: bytes | None = None
    upload_field: str = "image"
    files: list[str] = field(default_factory=list)


async def read_request(request: Request, max_bytes: int) -> Body:
    """The body of a processing request: JSON (admin.is_json's rule) or multipart."""
    if media_type(request) == "multipart/form-data":
        raw = await read_body(request, max_bytes + MULTIPART_OVERHEAD, max_bytes)
        return await _multipart(request, raw, max_bytes)
    json_cap = max_bytes * 4 // 3 + MAX_JSON_OVERHEAD
    raw = await read_body(request, json_cap)
    if not raw.strip():
        raise BadRequest("empty body: send a JSON object, or multipart with an image", param="body")
    if not is_json(request, raw):
        raise unsupported_body(request, "JSON or multipart/form-data (field image)")
    value = parse_json(raw)
    if not isinstance(value, dict):
        raise BadRequest("the body must be a JSON object", param="body")
    return Body(value)


async def _multipart(request: Request, raw: bytes, max_bytes: int) -> Body:
    form = await parse_form(
        request, raw, max_bytes, max_files=2, max_fields=MAX_FORM_FIELDS, param="body"
    )
    body = Body({}, text=True)
    try:
        for name, value in form.multi_items():
            if isinstance(value, UploadFile):
                if name not in FILE_FIELDS or body.upload is not None:
                    which = "a second image" if body.upload is not None else f"file field {name!r}"
                    raise BadRequest(
                        f"unexpected {which}: send one image, in field image (or file)",
                        param=name,
                    )
                data = await value.read()
                if len(data) > max_bytes:
                    raise TooLarge(f"{name} is {len(data)} bytes, the limit is {max_bytes}")
                if not data:
                    raise BadRequest(f"the {name!r} field is empty", param=name)
                body.upload, body.upload_field = data, name
            elif name in body.fields:
                raise BadRequest(f"field {name} is given more than once", param=name)
            else:
                body.fields[name] = value
    finally:
        await form.close()  # the parser spooled parts to temp files
    return body
