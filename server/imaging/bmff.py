"""The Exif items of a HEIF or AVIF file, found by a bounded walk of its ISO-BMFF boxes.

HEIF keeps EXIF as an item of type `Exif` in the top-level `meta` box: `iinf` names the
item's type (in an `infe` box), `iloc` says where its bytes are (in the file, usually in
`mdat`, or in the `meta` box's own `idat`), and `iref` links it (`cdsc`) to the image it
describes. The payload opens with a 4-byte big-endian offset to the TIFF header.

Every size here comes from the file, so none is trusted: a box that claims to run past
its parent ends the walk there, each step moves forward by at least a box header, and the
boxes and items read are capped. Nothing here raises on any input.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

MAX_BOXES = 4096  # per level; a real file has a dozen top-level boxes, a few hundred items
MAX_EXTENTS = 64  # per item; libheif writes one


@dataclass(frozen=True, slots=True)
class ExifItem:
    type_at: int  # where the item's 4-byte type ("Exif") sits in its `infe` box
    payload: bytes | None  # the item's bytes as libheif reads them; None if not resolvable
    primary: bool  # linked (`cdsc`) to the primary image, whose EXIF libvips reads


def exif_items(data: bytes) -> list[ExifItem]:
    """Every `Exif` item of every top-level `meta` box, the primary image's first."""
    found: list[ExifItem] = []
    for kind, start, end in _boxes(data, 0, len(data)):
        if kind == b"meta":
            found += _meta(data, start + 4, end)  # meta is a full box: version and flags
    return sorted(found, key=lambda item: not item.primary)


def _boxes(data: bytes, at: int, end: int) -> list[tuple[bytes, int, int]]:
    """(type, content start, content end) of the boxes in data[at:end], as far as they fit."""
    out: list[tuple[bytes, int, int]] = []
    while at + 8 <= end and len(out) < MAX_BOXES:
        size, kind = struct.unpack_from(">L4s", data, at)
        header = 8
        if size == 1:  # a 64-bit size follows the type
            if at + 16 > end:
                break
            (size,) = struct.unpack_from(">Q", data, at + 8)
            header = 16
        elif size == 0:  # the box runs to the end of its parent
            size = end - at
        if size < header or at + size > end:
            break
        out.append((kind, at + header, at + size))
        at += size
    return out


def _meta(data: bytes, at: int, end: int) -> list[ExifItem]:
    children = _boxes(data, at, end)
    primary, types, places, refs = None, [], {}, []
    idat = (0, 0)
    for kind, start, stop in children:
        size = 4 if start < stop and data[start] != 0 else 2  # item ids: 16 bits in version 0
        if kind == b"pitm" and start + 4 + size <= stop:
            primary = _uint(data, start + 4, size)
        elif kind == b"iinf":
            types += _iinf(data, start, stop)
        elif kind == b"iloc":
            places.update(_iloc(data, start, stop))
        elif kind == b"idat":
            idat = (start, stop)
        elif kind == b"iref":
            refs.append((start, stop))
    links = {item for start, stop in refs for item in _described(data, start, stop, primary)}
    return [
        ExifItem(type_at, _payload(data, places.get(item), idat), item in links)
        for item, type_at in types
    ]


def _iinf(data: bytes, at: int, end: int) -> list[tuple[int, int]]:
    """(item id, where its type is) of each `infe` box (versions 2 and 3) of type Exif. An
    id named twice is listed twice: whichever libheif keeps, both are judged."""
    if at + 4 > end:
        return []
    at += 6 if data[at] == 0 else 8  # version, flags, then a 16- or 32-bit entry count
    types: list[tuple[int, int]] = []
    for kind, start, stop in _boxes(data, at, end):
        if kind != b"infe" or stop - start < 12 or data[start] not in (2, 3):
            continue
        wide = data[start] == 3
        item = _uint(data, start + 4, 4 if wide else 2)
        type_at = start + (10 if wide else 8)  # after the item id and protection index
        if type_at + 4 <= stop and data[type_at : type_at + 4] == b"Exif":
            types.append((item, type_at))
    return types


def _iloc(data: bytes, at: int, end: int) -> dict[int, tuple[int, list[tuple[int, int]]]]:
    """item id -> (construction method, [(offset, length)]) for every item located."""
    places: dict[int, tuple[int, list[tuple[int, int]]]] = {}
    try:
        version = data[at]
        sizes = _uint(data, at + 4, 2)
        offset_size, length_size = sizes >> 12, (sizes >> 8) & 15
        base_size, index_size = (sizes >> 4) & 15, sizes & 15 if version else 0
        wide = version == 2
        count = _uint(data, at + 6, 4 if wide else 2)
        at += 10 if wide else 8
        for _ in range(min(count, MAX_BOXES)):
            item = _uint(data, at, 4 if wide else 2)
            at += 4 if wide else 2
            method = _uint(data, at, 2) & 15 if version else 0
            at += 4 if version else 2  # construction method, data reference index
            base = _uint(data, at, base_size)
            extents_count = _uint(data, at + base_size, 2)
            at += base_size + 2
            extents = []
            for _ in range(min(extents_count, MAX_EXTENTS + 1)):
                at += index_size
                offset = _uint(data, at, offset_size)
                length = _uint(data, at + offset_size, length_size)
                at += offset_size + length_size
                extents.append((base + offset, length))
            if at > end:
                break
            # An id located twice is not read the way libheif might: unresolvable.
            places[item] = (-1, []) if item in places else (method, extents)
    except IndexError:  # an iloc cut short: what was read before stands
        pass
    return places


def _described(data: bytes, at: int, end: int, primary: int | None) -> set[int]:
    """Items with a `cdsc` (content describes) reference to the primary image."""
    if at + 4 > end or primary is None:
        return set()
    wide = data[at] != 0
    size = 4 if wide else 2
    items: set[int] = set()
    for kind, start, stop in _boxes(data, at + 4, end):
        if kind != b"cdsc" or start + 2 * size + 2 > stop:
            continue
        source, count = _uint(data, start, size), _uint(data, start + size, 2)
        if start + size + 2 + count * size > stop:
            continue
        targets = {_uint(data, start + size + 2 + i * size, size) for i in range(count)}
        if primary in targets:
            items.add(source)
    return items


def _payload(
    data: bytes, place: tuple[int, list[tuple[int, int]]] | None, idat: tuple[int, int]
) -> bytes | None:
    """The bytes libheif reads for an item: its extents, from the file (construction
    method 0) or from `idat` (1). None for anything else, or an extent out of bounds."""
    if place is None:
        return None
    method, extents = place
    if method not in (0, 1) or not 0 < len(extents) <= MAX_EXTENTS:
        return None
    start, end = (0, len(data)) if method == 0 else idat
    parts = []
    for offset, length in extents:
        if length == 0 or start + offset + length > end:
            return None
        parts.append(data[start + offset : start + offset + length])
    return b"".join(parts)


def _uint(data: bytes, at: int, size: int) -> int:
    if size == 0:
        return 0
    if at + size > len(data) or size not in (2, 4, 8):
        raise IndexError(f"{size}-byte field at {at}")
    return int.from_bytes(data[at : at + size], "big")
