"""Image references (SPEC §6): what a client may give as `image`, and the bytes behind it.

A reference is `{"url"}`, `{"base64"}` (plain or a `data:` URL), `{"id"}` (a stored asset),
or a string: an http(s) URL, a `data:` URL, else an asset id; a multipart request carries
the bytes themselves. Parsing (pure) checks the shape and decodes base64 up front, so every
field of a request is validated before any fetch; inputs.py does the I/O.
Errors name the field as sent: `image.url`, `ops[1].params.watermark_image.base64`.
"""

from __future__ import annotations

import binascii
import re
from dataclasses import dataclass
from typing import Literal

import pybase64

from server.errors import AssetNotFound, ImgcdnError, InvalidId, InvalidParam, TooLarge
from server.names import validate_id
from server.schema import Custom

# Base64 is a third larger than the bytes; the exact byte cap is checked after decoding.
MAX_BASE64_CHARS = 70_000_000
_WHITESPACE = b" \t\n\r\x0b\x0c"  # what \s matches in a bytes pattern
_URL_SAFE = bytes.maketrans(b"-_", b"+/")  # clients send either alphabet
_DATA_URL = re.compile(r"data:([a-z0-9.+/-]*)(;[a-z0-9=.+-]*)*?;base64,", re.ASCII | re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class Ref:
    kind: Literal["url", "id", "bytes"]
    value: str | bytes  # the URL, the asset id, or the image bytes
    path: str  # how the client named it, for errors
    # `path` is the URL's own field (a drop-in's plain `image_url`), not one that can hold
    # {url}, {id} or {base64}: errors name it as it is.
    plain: bool = False

    @property
    def where(self) -> str:
        """The field errors about this reference name: `image.url`, `image.id`, `image`."""
        if self.plain or self.kind == "bytes":
            return self.path
        return f"{self.path}.{self.kind}"


def _parse(value: object, path: str, text: bool = False) -> Ref:
    if isinstance(value, str):
        if value[:8].lower().startswith(("http://", "https://")):
            return Ref("url", value, path)
        if value[:5].lower() == "data:":
            return Ref("bytes", decode_base64(value, path), path)
        return Ref("id", value, path)
    if isinstance(value, dict):
        keys = [k for k in ("url", "base64", "id") if k in value]
        extra = sorted(set(value) - {"url", "base64", "id"})
        if extra:
            where = f"{path}.{extra[0]}"
            raise InvalidParam(where, f"unknown field {where}; {path} takes url, base64 or id")
        if len(keys) != 1:
            raise InvalidParam(path, f"{path} needs exactly one of url, base64 or id")
        raw = value[keys[0]]
        if not isinstance(raw, str) or not raw:
            raise InvalidParam(f"{path}.{keys[0]}", f"{path}.{keys[0]} must be a non-empty string")
        if keys[0] == "base64":
            return Ref("bytes", decode_base64(raw, f"{path}.base64"), path)
        return Ref(keys[0], raw, path)  # type: ignore[arg-type]  # url or id, checked above
    raise InvalidParam(
        path, f"{path} must be a URL, a data: URL, an asset id, or an object with url, base64 or id"
    )


def decode_base64(raw: str, path: str) -> bytes:
    """The bytes of base64 text or a `data:...;base64,` URL, for every API that takes base64
    images (this one and the admin upload); errors name `path`."""
    if len(raw) > MAX_BASE64_CHARS:
        raise TooLarge(f"{path} is over {MAX_BASE64_CHARS} characters")
    if raw[:5].lower() == "data:":
        head = _DATA_URL.match(raw)
        if head is None:
            raise InvalidParam(
                path, f"{path} is a data: URL without ;base64, (only base64 is taken)"
            )
        raw = raw[head.end() :]
    # A strict SIMD decode (a non-alphabet byte or misplaced padding is an error), with the
    # URL-safe alphabet read as the standard one. Whitespace (line breaks every 76
    # characters, as some encoders write) is dropped only when the first try meets it:
    # each extra pass over a 3.4 MB text costs about 1.5 ms, and a regex more.
    encoded = raw.encode("ascii", "replace")
    if b"-" in encoded or b"_" in encoded:
        encoded = encoded.translate(_URL_SAFE)
    try:
        data = _strict(encoded)
    except binascii.Error:
        try:
            data = _strict(encoded.translate(None, _WHITESPACE))
        except binascii.Error:
            raise InvalidParam(path, f"{path} is not valid base64") from None
    if not data:
        raise InvalidParam(path, f"{path} decodes to no bytes")
    return data


def _strict(encoded: bytes) -> bytes:
    # pybase64 (SIMD) takes 0.13 ms for the 3.4 MB of a 12 MP photo where binascii takes
    # 4.1 ms (bench/process_cost.py), with the same strictness: validate=True refuses any
    # byte outside the alphabet and anything after the padding.
    return pybase64.b64decode(encoded + b"=" * (-len(encoded) % 4), validate=True)


REF = Custom(
    _parse,
    {
        "oneOf": [
            {"type": "string", "description": "an http(s) URL, a data: URL, or an asset id"},
            {
                "type": "object",
                "properties": {
                    "url": {"type": "string", "format": "uri"},
                    "base64": {"type": "string", "description": "base64 or a data: URL"},
                    "id": {"type": "string", "description": "a stored asset's id"},
                },
                "minProperties": 1,
                "maxProperties": 1,
                "additionalProperties": False,
            },
        ]
    },
    "an image: {url}, {base64}, {id}, or a string (URL, data: URL or asset id)",
)


def rename(error: ImgcdnError, ref: Ref) -> ImgcdnError:
    """An error from fetching or storing, re-pointed at the field the client sent."""
    if error.param in (None, "url", "id", "body", "file"):
        error.param = ref.where
    return error


def check_id(ref: Ref, prefix: str) -> str:
    """An asset id a caller may read: well-formed, and inside its key's prefix (else it does
    not exist for this caller: a 404, as for any id it cannot see)."""
    assert isinstance(ref.value, str)
    try:
        asset_id = validate_id(ref.value)
    except InvalidId as exc:
        raise InvalidParam(ref.where, f"{ref.where}: {exc.message}") from None
    if not asset_id.startswith(prefix):
        raise AssetNotFound(asset_id)
    return asset_id
