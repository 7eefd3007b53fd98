"""Delivery URLs built for clients: POST /v1/urls and `imgcdn sign`. Pure: no I/O."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from urllib.parse import quote, urlencode

from server import signing


def delivery_path(template: str, asset_id: str, params: Mapping[str, str]) -> str:
    path = f"/t/{template}/{quote(asset_id, safe='/')}"
    query = urlencode(list(params.items()), safe=",:")
    return f"{path}?{query}" if query else path


def finish(
    path_and_query: str, keys: Sequence[str], expires_in_s: int | None
) -> tuple[str, int | None]:
    """Add `exp` (when asked) and `sig` (when the server has keys; the last key signs)."""
    expires_at = None
    if expires_in_s is not None:
        expires_at = int(time.time()) + expires_in_s
        glue = "&" if "?" in path_and_query else "?"
        path_and_query = f"{path_and_query}{glue}exp={expires_at}"
    if keys:
        path_and_query = signing.sign(path_and_query, keys[-1])
    return path_and_query, expires_at
