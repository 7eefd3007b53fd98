"""exifsafe.defuse: EXIF that would hold libexif (inside every libvips loader) in a loop is
cut out of JPEG, PNG and WebP files before libvips sees them; every other file is left
byte for byte as it is; and the metadata answer still reads what it can of the cut block."""

from __future__ import annotations

import base64
import struct
import threading
from collections.abc import Callable

import pytest
import pyvips
from conftest import AUTH, IMAGES
from exif_blobs import (
    ASCII,
    CAMERA_EXIF,
    CAMERA_GPS,
    CAMERA_IFD0,
    LONG,
    build,
    entry,
    fan_out,
    in_jpeg,
    in_png,
    in_webp,
)

from server.imaging.exifsafe import MAX_IFDS, blocks, defuse, hostile
from server.imaging.inspect import SourceLimits, probe
from server.imaging.metadata import describe

LIMITS = SourceLimits(max_bytes=50_000_000, max_pixels=100_000_000, max_frames=100)
PHONE = build(CAMERA_IFD0, CAMERA_EXIF, CAMERA_GPS, prefix=b"")


def webp_with_exif() -> bytes:
    image = pyvips.Image.thumbnail(str(IMAGES / "photo.jpg"), 160).copy()
    image.set_type(pyvips.GValue.blob_type, "exif-data", build(CAMERA_IFD0))
    body: bytes = image.webpsave_buffer(keep="exif")
    return body


CONTAINERS = {
    "jpeg": lambda blob: in_jpeg((IMAGES / "photo.jpg").read_bytes(), blob),
    "png": lambda blob: in_png((IMAGES / "alpha.png").read_bytes(), blob),
    "webp": lambda blob: in_webp(webp_with_exif(), blob),
}


def make_ifd(*entries: bytes, next_ifd: int = 0) -> bytes:
    return struct.pack("<H", len(entries)) + b"".join(entries) + struct.pack("<L", next_ifd)


def tiff(ifd0: bytes, extra: bytes = b"") -> bytes:
    return b"II*\x00" + struct.pack("<L", 8) + ifd0 + extra


MAKE = entry(0x010F, ASCII, 4, b"Abc\x00")


@pytest.mark.parametrize(
    "blob",
    [
        fan_out(100),
        tiff(make_ifd(MAKE, entry(0x8769, LONG, 1, 8))),  # Exif IFD is IFD0
        tiff(make_ifd(MAKE, next_ifd=8)),  # IFD1 is IFD0
        tiff(make_ifd(entry(0x8769, LONG, 1, 38), entry(0x8825, LONG, 1, 38)), make_ifd(MAKE)),
        tiff(make_ifd(entry(0x8769, LONG, 1, 34), entry(0x8769, LONG, 1, 40)), b"\x00" * 12),
        # a chain of distinct IFDs, each pointing at the next, longer than any real file's
        b"II*\x00"
        + struct.pack("<L", 8)
        + b"".join(make_ifd(entry(0xA005, LONG, 1, 8 + 18 * (i + 1))) for i in range(MAX_IFDS + 1)),
        tiff(make_ifd(*[MAKE] * 2100)),  # more entries than all real IFDs together
    ],
    ids=["fan-out", "self", "ifd1-self", "shared", "twice", "chain", "entries"],
)
def test_loops_shared_ifds_fan_outs_and_huge_ifds_are_hostile(blob):
    assert hostile(blob)


@pytest.mark.parametrize(
    "blob",
    [
        PHONE,
        build(CAMERA_IFD0, CAMERA_EXIF, CAMERA_GPS, order=">"),
        b"II*\x00" + struct.pack("<LH", 8, 0xFFFF) + MAKE * 3,  # a lying count, cut by the blob
        b"II*\x00" + struct.pack("<L", 0xFFFFFFF0),
        b"junk",
        b"",
    ],
)
def test_real_and_merely_malformed_exif_is_not_hostile(blob):
    assert not hostile(blob)


@pytest.mark.parametrize("kind", sorted(CONTAINERS))
def test_a_hostile_block_is_cut_and_the_image_still_decodes_the_same(kind):
    clean = CONTAINERS[kind](PHONE)
    bad = CONTAINERS[kind](fan_out(1000))  # minutes of libexif time, were it loaded
    assert [hostile(blob) for _, _, blob in blocks(bad)] == [True]
    safe = defuse(bad)
    assert blocks(safe) == [] and len(safe) < len(bad)
    image = pyvips.Image.new_from_buffer(safe, "")
    assert "exif-data" not in image.get_fields()
    reference = pyvips.Image.new_from_buffer(clean, "")
    assert (image.width, image.height) == (reference.width, reference.height)
    assert abs(image.avg() - reference.avg()) < 1e-9


@pytest.mark.parametrize("kind", sorted(CONTAINERS))
def test_files_with_real_exif_are_returned_untouched(kind):
    data = CONTAINERS[kind](PHONE)
    assert defuse(data) is data


@pytest.mark.parametrize(
    "name", ["photo.jpg", "orient6.jpg", "cmyk.jpg", "p3.jpg", "alpha.png", "anim.gif"]
)
def test_the_test_images_are_returned_untouched(name):
    data = (IMAGES / name).read_bytes()
    assert defuse(data) is data


def test_the_metadata_answer_reads_what_it_can_of_a_hostile_block():
    data = CONTAINERS["jpeg"](fan_out(1000))
    answer = describe(data, probe(defuse(data), LIMITS))
    assert answer["exif"]["camera"] == {"make": "Abc"}
    assert (answer["width"], answer["height"]) == (800, 600)


def _finishes(call: Callable[[], int], seconds: float = 30) -> int | None:
    """`call`'s answer, or None if it is still running at the deadline (a trapped thread)."""
    out: list[int] = []
    thread = threading.Thread(target=lambda: out.append(call()), daemon=True)
    thread.start()
    thread.join(timeout=seconds)
    return out[0] if out else None


def test_a_pointer_loop_upload_is_stored_defused_and_delivers_and_processes(client):
    # 1000 pointers back at IFD0: libexif alone spends minutes on this header.
    trap = in_jpeg((IMAGES / "photo.jpg").read_bytes(), fan_out(1000))
    assert hostile(blocks(trap)[0][2])
    put = _finishes(
        lambda: client.put("/v1/assets/trap.jpg", content=trap, headers=AUTH).status_code
    )
    assert put == 201
    assert _finishes(lambda: client.get("/t/_/trap.jpg?w=50").status_code) == 200
    stored = client.get("/v1/assets/trap.jpg/original", headers=AUTH).content
    assert stored != trap and not any(hostile(blob) for _, _, blob in blocks(stored))
    body = {"image": {"base64": base64.b64encode(trap).decode()}, "width": 40}
    resize = lambda: client.post("/v1/image/resize", json=body, headers=AUTH).status_code  # noqa: E731
    assert _finishes(resize) == 200
