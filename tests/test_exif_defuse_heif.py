"""exifsafe.defuse on HEIF and AVIF: the Exif item of the `meta` box is found by a bounded
box walk, and a hostile one is renamed in place (4 bytes, nothing moves), so libvips' heifload
never hands it to libexif; the image decodes to the same pixels, and files with real EXIF
are left byte for byte."""

from __future__ import annotations

import base64
import struct
import subprocess
import sys
import time

import pytest
import pyvips
from conftest import AUTH, IMAGES
from exif_blobs import CAMERA_EXIF, CAMERA_GPS, CAMERA_IFD0, LONG, build, entry, fan_out
from exif_blobs import in_heif as with_exif

from server.imaging import bmff, decoders
from server.imaging.exifsafe import DEFUSED_ITEM, blocks, defuse, hostile
from server.imaging.inspect import SourceLimits, probe
from server.imaging.metadata import describe

PHONE = build(CAMERA_IFD0, CAMERA_EXIF, CAMERA_GPS, prefix=b"")
LOOP = fan_out(1000)  # 1000 pointers back at IFD0: minutes of libexif, were it parsed


def avif() -> bytes:
    """A real AVIF with an Exif item, written by libvips (libheif, AV1)."""
    image = pyvips.Image.thumbnail(str(IMAGES / "photo.jpg"), 96).copy()
    image.set_type(pyvips.GValue.blob_type, "exif-data", build(CAMERA_IFD0, prefix=b""))
    body: bytes = image.heifsave_buffer(compression="av1", Q=50)
    return body


AVIF = avif()
HEIC = (IMAGES / "orient6.heic").read_bytes()  # a phone-style HEIC: EXIF with Orientation 6


def pixels(data: bytes, kind: str) -> pyvips.Image:
    if kind == "heic":
        return decoders.decode(data, "heic")
    return pyvips.Image.new_from_buffer(data, "")


def header_seconds(data: bytes, deadline: float) -> float | None:
    """How long libvips' heifload takes over the header of `data` in a child process (it
    cannot be interrupted in-process), or None if it was still at it at `deadline`."""
    code = (
        "import sys, time, pyvips; d = sys.stdin.buffer.read(); t = time.perf_counter();"
        "pyvips.Image.heifload_buffer(d).get_fields(); print(time.perf_counter() - t)"
    )
    try:
        done = subprocess.run(  # our own interpreter on our own snippet
            [sys.executable, "-c", code], input=data, capture_output=True, timeout=deadline
        )
    except subprocess.TimeoutExpired:
        return None
    assert done.returncode == 0, done.stderr
    return float(done.stdout)


@pytest.mark.parametrize(("name", "data"), [("avif", AVIF), ("heic", HEIC)])
def test_the_exif_item_of_an_avif_and_a_heic_is_found_with_its_tiff_blob(name, data):
    [(start, end, blob)] = blocks(data)
    assert data[start:end] == b"Exif"
    assert blob[:6] == b"Exif\x00\x00" and blob[6:10] in (b"II*\x00", b"MM\x00*")
    assert not hostile(blob) and defuse(data) is data


@pytest.mark.parametrize("name", ["alpha.heic", "multi.heic", "big-primary.heic"])
def test_heic_files_without_exif_have_no_block_and_are_returned_untouched(name):
    data = (IMAGES / name).read_bytes()
    assert blocks(data) == [] and defuse(data) is data


@pytest.mark.parametrize(("kind", "base"), [("avif", AVIF), ("heic", HEIC)])
def test_a_hostile_exif_item_is_renamed_in_place_and_the_image_decodes_the_same(kind, base):
    clean, bad = with_exif(base, PHONE), with_exif(base, LOOP)
    assert [hostile(blob) for _, _, blob in blocks(bad)] == [True]
    assert defuse(clean) is clean
    [(at, _, _)] = blocks(bad)
    safe = defuse(bad)
    assert len(safe) == len(bad) and safe[at : at + 4] == DEFUSED_ITEM
    assert safe[:at] + safe[at + 4 :] == bad[:at] + bad[at + 4 :]  # nothing else changed
    assert blocks(safe) == [] and defuse(safe) == safe
    image, reference = pixels(safe, kind), pixels(clean, kind)
    assert (image.width, image.height, image.bands) == (
        reference.width,
        reference.height,
        reference.bands,
    )
    assert abs(image.avg() - reference.avg()) < 1e-9
    assert (image == reference).min() == 255  # every pixel the same
    assert "exif-data" not in pyvips.Image.heifload_buffer(safe).get_fields()


@pytest.mark.parametrize(("kind", "base"), [("avif", AVIF), ("heic", HEIC)])
def test_libvips_holds_on_the_raw_loop_and_reads_the_defused_header_at_once(kind, base):
    bad = with_exif(base, LOOP)
    # heifload reads a HEIC's header (and EXIF) too: the path a HEIC not branded HEVC takes.
    assert header_seconds(bad, deadline=4) is None
    seconds = header_seconds(defuse(bad), deadline=30)
    assert seconds is not None and seconds < 1


def test_an_exif_item_whose_bytes_cannot_be_located_is_renamed_unjudged():
    bad = with_exif(AVIF, LOOP)
    cut = bad[: len(bad) - 100]  # the extent now runs past the end of the file
    [item] = bmff.exif_items(cut)
    assert item.payload is None and blocks(cut) == []
    safe = defuse(cut)
    assert safe[item.type_at : item.type_at + 4] == DEFUSED_ITEM


def free(size: int, header: bytes = b"") -> bytes:
    return struct.pack(">L4s", size, b"free") + header


@pytest.mark.parametrize(
    "tail",
    [
        free(0),  # runs to the end of the file
        free(1, struct.pack(">Q", 2**63)),  # a 64-bit size far past the end
        free(3),  # smaller than its own header
        free(0xFFFFFFFF),  # past the end
        struct.pack(">L4s", 8, b"meta") * 50_000,  # many empty meta boxes
    ],
    ids=["to-end", "huge-64", "too-small", "past-end", "many"],
)
def test_the_box_walk_stops_at_a_lying_size_and_finds_what_came_before(tail):
    data = with_exif(AVIF, LOOP)
    data = data + tail
    start = time.perf_counter()
    found = blocks(data)
    assert time.perf_counter() - start < 0.5
    assert len(found) == 1 and hostile(found[0][2])
    assert blocks(defuse(data)) == []


def test_a_self_loop_as_small_as_the_heic_fixtures_own_exif_is_hostile():
    loop = b"MM\x00*" + struct.pack(">LH", 8, 1) + entry(0x8769, LONG, 1, 8, ">") + bytes(4)
    assert len(loop) == 26 and hostile(loop)
    bad = with_exif(HEIC, loop)
    assert [hostile(blob) for _, _, blob in blocks(bad)] == [True]
    assert blocks(defuse(bad)) == []


def test_a_hostile_avif_upload_is_stored_defused_and_answers_metadata_and_renders(client):
    trap = with_exif(AVIF, LOOP)
    start = time.perf_counter()
    r = client.put("/v1/assets/trap.avif", content=trap, headers=AUTH)
    assert r.status_code == 201
    stored = client.get("/v1/assets/trap.avif/original", headers=AUTH).content
    assert len(stored) == len(trap) and blocks(stored) == []
    assert client.get("/t/_/trap.avif?w=40&fmt=png").status_code == 200
    body = {"image": {"base64": base64.b64encode(trap).decode()}}
    answer = client.post("/v1/image/metadata", json=body, headers=AUTH)
    assert answer.status_code == 200
    # Read from the original bytes by our bounded parser: the make in the looping IFD0.
    assert answer.json()["exif"]["camera"] == {"make": "Abc"}
    assert time.perf_counter() - start < 30  # minutes, had libexif seen the loop


def test_the_metadata_of_a_heic_reads_its_exif_item():
    data = with_exif(HEIC, build(CAMERA_IFD0, CAMERA_EXIF, CAMERA_GPS, prefix=b""))
    answer = describe(data, probe(data, SourceLimits(50_000_000, 100_000_000, 100)))
    assert answer["exif"]["camera"]["model"] == "Pixel 7"
    assert answer["exif"]["location"]["latitude"] == pytest.approx(-33.85875)


def test_exif_text_is_not_mistaken_for_an_item():
    # An ASCII "Exif" in the pixels or a free box is no infe box: nothing found, nothing renamed.
    data = AVIF + free(8 + 20) + b"infe" + b"\x02" + bytes(7) + b"Exif" + bytes(4)
    assert len(blocks(data)) == 1 and defuse(data) is data
