"""What a URL may name: asset ids (SPEC §2) and template names. Pure: no I/O.

An id reaches storage keys, file paths, S3 keys and log lines, so it is judged here once,
in every form a reader behind us might give it, before anything else sees it.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterator
from urllib.parse import unquote

from server.errors import InvalidId, InvalidParam

# A template name, as every message that states the rule writes it.
TEMPLATE_NAME = "[a-z0-9][a-z0-9_-]{0,63}"
_TEMPLATE = re.compile(f"_|{TEMPLATE_NAME}")
MAX_ID_BYTES = 1024


def validate_template_name(name: str) -> str:
    if not _TEMPLATE.fullmatch(name):
        raise InvalidParam("template", f"template must match {TEMPLATE_NAME} or _, got {name!r}")
    return name


def validate_id(asset_id: str) -> str:
    """An asset id as SPEC §2 allows: 1..1024 bytes of UTF-8, no traversal, no control
    characters: neither as given nor in any form that decoding it again makes of it."""
    try:
        size = len(asset_id.encode("utf-8"))
    except UnicodeEncodeError:  # a lone surrogate: no store can write it as a key
        raise InvalidId("id must be valid UTF-8") from None
    if not 1 <= size <= MAX_ID_BYTES:
        raise InvalidId(f"id must be 1..{MAX_ID_BYTES} bytes, got {size}")
    for segment in asset_id.split("/"):
        if not segment:
            raise InvalidId("id must not contain empty segments")
        for depth, form in enumerate(_decodings(segment)):
            _check_segment(form, decoded=depth > 0)
    return asset_id


def _decodings(segment: str) -> Iterator[str]:
    """The segment, then what percent-decoding it again and again makes of it: whatever sits
    behind us (S3, a CDN, a log reader) may decode "%252e%252e" once, or twice, more."""
    yield segment
    while "%" in segment:  # bounded: every decoding that changes the text shortens it
        try:
            decoded = unquote(segment, errors="strict")
        except UnicodeDecodeError:  # "%c0%ae" is an overlong "." to a lenient decoder
            raise InvalidId("id must not percent-encode bytes that are not UTF-8") from None
        if decoded == segment:
            return
        segment = decoded
        yield segment


def _check_segment(form: str, decoded: bool) -> None:
    if "\\" in form:
        raise InvalidId("id must not contain a backslash")
    if decoded and "/" in form:
        raise InvalidId("id must not contain a percent-encoded '/'")
    if any(unicodedata.category(c) == "Cc" for c in form):  # C0, DEL and C1
        raise InvalidId("id must not contain control characters")
    # NFKC, which some readers apply, makes ".." of fullwidth dots (U+FF0E) and of U+2025.
    folded = unicodedata.normalize("NFKC", form).replace("\\", "/")
    if any(part in (".", "..") for part in folded.split("/")):
        raise InvalidId("id must not contain '.' or '..' segments")
