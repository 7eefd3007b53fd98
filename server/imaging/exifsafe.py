"""Drop an EXIF block libvips must never see, before any loader does.

libvips hands every loaded image's EXIF to libexif, which follows sub-IFD pointers without
remembering where it has been: a 1.2 KB JPEG whose IFD0 holds fifty Exif and GPS pointers
back to itself holds a libvips header read for 6 s, a 12 KB one for minutes, and nothing can
cancel it (it is C, inside the loader). So the EXIF of a JPEG (APP1), PNG (eXIf) or WebP
(EXIF chunk) is walked here first, as libexif would walk it but bounded, and a block whose
IFDs loop, are shared, fan out, or hold an absurd number of entries is cut out of the file.
The image itself is untouched; its EXIF was unreadable anyway.

HEIF and AVIF keep EXIF as an `Exif` item of the `meta` box (found by imaging/bmff.py).
libvips' heifload hands the primary image's to libexif too, for AVIF and for a HEIC alike
(HEIC is decoded by pi-heif, which never calls libexif, but a HEIC whose brands do not say
HEVC reaches libvips). There nothing is cut, which would move every offset `iloc` holds:
the item's type is renamed in place, 4 bytes, so libheif lists it as an unknown item and
libvips never parses it. An Exif item whose bytes cannot be located as libheif would read
them (an extent past the end, an item located twice) is renamed too: unjudged, unsafe.
"""

from __future__ import annotations

import struct

from server.imaging import bmff

# libexif follows these in any IFD, and IFD0's next-IFD pointer (IFD1).
_POINTERS = (0x8769, 0x8825, 0xA005)  # Exif, GPS, Interoperability
MAX_IFDS = 8  # IFD0, IFD1, Exif, GPS, Interop: 5 in a real file
MAX_SCANNED = 2048  # entries, over all IFDs
# What a defused HEIF Exif item is renamed to: a type neither libheif nor libvips knows.
DEFUSED_ITEM = b"void"


def defuse(data: bytes) -> bytes:
    """`data` without its EXIF blocks that are hostile to libexif; `data` itself (the same
    object) when there is none. Never raises; looks only at the container's structure."""
    if data[4:8] == b"ftyp":
        return _defuse_heif(data)
    found = [(start, end) for start, end, blob in blocks(data) if hostile(blob)]
    if not found:
        return data
    out = bytearray()
    at = 0
    for start, end in found:
        out += data[at:start]
        at = end
    out += data[at:]
    if data[:4] == b"RIFF":
        _fix_webp(out)
    return bytes(out)


def blocks(data: bytes) -> list[tuple[int, int, bytes]]:
    """(start, end, EXIF blob) of each EXIF segment or chunk in a JPEG, PNG or WebP, where
    start..end is the whole segment or chunk (what to cut); of a HEIF or AVIF, each Exif
    item whose bytes could be located, the primary image's first, start..end being the
    item's type (what defuse renames) and the blob its payload after the 4-byte offset."""
    if data[4:8] == b"ftyp":
        return [
            (item.type_at, item.type_at + 4, item.payload[4:])
            for item in bmff.exif_items(data)
            if item.payload is not None
        ]
    try:
        if data[:3] == b"\xff\xd8\xff":
            return _jpeg(data)
        if data[:8] == b"\x89PNG\r\n\x1a\n":
            return _chunks(data, 8, ">", b"eXIf", crc=True)
        if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
            return _chunks(data, 12, "<", b"EXIF", crc=False)
    except struct.error:  # a structure cut short: what was found before it stands
        pass
    return []


def hostile(blob: bytes) -> bool:
    """Whether libexif would loop or fan out on `blob`: an IFD reached twice (a loop, or two
    pointers to one IFD), a pointer tag twice in one IFD, more than MAX_IFDS IFDs, or more
    than MAX_SCANNED entries. A merely malformed blob is not hostile: libexif skips it."""
    starts = [at for at in (blob.find(b"II*\x00", 0, 64), blob.find(b"MM\x00*", 0, 64)) if at >= 0]
    if not starts:
        return False
    tiff = blob[min(starts) :]
    order = "<" if tiff[:2] == b"II" else ">"
    if len(tiff) < 8:
        return False
    (ifd0,) = struct.unpack(order + "L", tiff[4:8])
    queue, seen, scanned = [ifd0], set[int](), 0
    while queue:
        at = queue.pop()
        if at in seen or len(seen) >= MAX_IFDS:
            return True
        seen.add(at)
        if at + 2 > len(tiff):
            continue
        (count,) = struct.unpack(order + "H", tiff[at : at + 2])
        count = min(count, (len(tiff) - at - 6) // 12)
        scanned += max(count, 0)
        if scanned > MAX_SCANNED:
            return True
        pointers: set[int] = set()
        for i in range(max(count, 0)):
            tag, _, _, value = struct.unpack(
                order + "HHLL", tiff[at + 2 + 12 * i : at + 14 + 12 * i]
            )
            if tag in _POINTERS:
                if tag in pointers:
                    return True
                pointers.add(tag)
                queue.append(value)
        if at == ifd0 and count >= 0:
            end = at + 2 + 12 * count
            (next_ifd,) = struct.unpack(order + "L", tiff[end : end + 4])
            if next_ifd:
                queue.append(next_ifd)
    return False


def _jpeg(data: bytes) -> list[tuple[int, int, bytes]]:
    found = []
    at = 2
    while at + 4 <= len(data):
        if data[at] != 0xFF:
            break
        marker = data[at + 1]
        if marker == 0xFF:  # fill byte
            at += 1
            continue
        if marker in (0xD9, 0xDA):  # end of image, start of scan: no more metadata
            break
        if 0xD0 <= marker <= 0xD7 or marker == 0x01:  # markers without a length
            at += 2
            continue
        (length,) = struct.unpack(">H", data[at + 2 : at + 4])
        end = at + 2 + length
        if length < 2 or end > len(data):
            break
        payload = data[at + 4 : end]
        if marker == 0xE1 and payload[:4] == b"Exif":  # what libvips takes as EXIF
            found.append((at, end, payload))
        at = end
    return found


def _chunks(
    data: bytes, at: int, order: str, kind: bytes, crc: bool
) -> list[tuple[int, int, bytes]]:
    """PNG chunks (big-endian length, type, data, CRC) or RIFF chunks (type, little-endian
    length, data padded to even)."""
    found = []
    while at + 8 <= len(data):
        if crc:
            (length,) = struct.unpack(">L", data[at : at + 4])
            name, start = data[at + 4 : at + 8], at + 8
            end = start + length + 4
        else:
            name = data[at : at + 4]
            (length,) = struct.unpack(order + "L", data[at + 4 : at + 8])
            start = at + 8
            end = start + length + (length & 1)
        if end > len(data):
            break
        if name == kind:
            found.append((at, end, data[start : start + length]))
        if name == b"IEND" and crc:
            break
        at = end
    return found


def _defuse_heif(data: bytes) -> bytes:
    # libvips skips the payload's 4-byte offset field and hands libexif the rest.
    found = [
        item.type_at
        for item in bmff.exif_items(data)
        if item.payload is None or hostile(item.payload[4:])
    ]
    if not found:
        return data
    out = bytearray(data)
    for at in found:
        out[at : at + 4] = DEFUSED_ITEM
    return bytes(out)


def _fix_webp(out: bytearray) -> None:
    """After cutting the EXIF chunk: the RIFF size, and VP8X's "has EXIF" flag cleared."""
    out[4:8] = struct.pack("<L", len(out) - 8)
    if out[12:16] == b"VP8X" and len(out) > 20:
        out[20] &= ~0x08 & 0xFF
