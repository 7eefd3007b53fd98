from __future__ import annotations

from typing import Any

from server.imaging.inspect import SourceInfo


def describe(data: bytes, info: SourceInfo) -> dict[str, Any]:
    return {"width": info.width, "height": info.height, "mime": info.mime}
