"""Limits (SPEC §4): what is refused before it costs memory or a render thread, and how."""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import threading
from dataclasses import replace
from pathlib import Path

import httpx2 as httpx
import pytest
from conftest import AUTH, IMAGES, jpeg_bomb, png_bomb, upload, wait_until

from server.errors import StorageUnavailable
from server.imaging import pipeline

ANIM_FRAME_PIXELS = 120 * 68  # tests/images/anim.gif: 6 frames of 120x68


@pytest.fixture
def settings(settings, request):
    """conftest's settings, overridden by `indirect` parametrization (live_server reads them)."""
    return replace(settings, **getattr(request, "param", {}))


def stored_files(data_dir: Path) -> list[Path]:
    return [p for p in (data_dir / "assets").rglob("*") if p.is_file()]


def assert_nothing_stored(client, data_dir: Path, asset_id: str) -> None:
    assert client.get(f"/v1/assets/{asset_id}", headers=AUTH).status_code == 404
    assert stored_files(data_dir) == []  # no meta.json, no blob, no .tmp- left behind


# Formats we do not read (TIFF, BMP and HEIC are read: tests/test_inputs_*.py).
JXL = b"\xff\x0a" + bytes(64)  # a JPEG XL codestream's signature
PDF = b"%PDF-1.7\n" + b"0" * 64


SVG = b'<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"><rect width="10"/></svg>'


def image(name: str) -> bytes:
    return (IMAGES / name).read_bytes()


@pytest.mark.parametrize(
    ("body", "overrides", "status", "code", "needle"),
    [
        (lambda: png_bomb(20000, 20000), {}, 413, "source_too_large", "pixels"),
        (lambda: jpeg_bomb(20000, 20000), {}, 413, "source_too_large", "pixels"),
        (
            lambda: image("anim.gif"),
            {"max_source_pixels": 6 * ANIM_FRAME_PIXELS - 1},
            413,
            "source_too_large",
            "120x68x6",
        ),
        (lambda: image("anim.gif"), {"max_frames": 5}, 413, "source_too_large", "6 frames"),
        (lambda: image("photo.jpg"), {"max_source_bytes": 50_000}, 413, "source_too_large", ""),
        (lambda: b"hello, world\n" * 10, {}, 415, "unsupported_format", ""),
        (lambda: JXL, {}, 415, "unsupported_format", ""),
        (lambda: SVG, {}, 415, "unsupported_format", ""),
        (lambda: PDF, {}, 415, "unsupported_format", ""),
        (lambda: image("photo.jpg")[: len(image("photo.jpg")) // 2], {}, 422, "undecodable", ""),
    ],
    ids=[
        "png-bomb",
        "jpeg-bomb",
        "pixels-count-frames",
        "frames",
        "bytes",
        "text",
        "jpeg-xl",
        "svg",
        "pdf",
        "truncated-jpeg",
    ],
)
@pytest.mark.parametrize("multipart", [False, True], ids=["raw", "multipart"])
def test_a_refused_upload_is_answered_with_its_status_and_stores_nothing(
    make_client, settings, body, overrides, status, code, needle, multipart
):
    client = make_client(**overrides)
    data = body()
    if multipart:
        files = {"file": ("upload", data, "application/octet-stream")}
        r = client.put("/v1/assets/refused.jpg", files=files, headers=AUTH)
    else:
        r = client.put("/v1/assets/refused.jpg", content=data, headers=AUTH)

    assert r.status_code == status, r.text
    assert r.headers["cache-control"] == "no-store"
    assert r.json()["error"]["code"] == code
    assert needle in r.json()["error"]["message"]
    assert_nothing_stored(client, settings.data_dir, "refused.jpg")


def test_a_refused_replace_keeps_the_asset_it_would_have_replaced(client, settings):
    first = upload(client, "keep.jpg", "photo.jpg")

    r = client.put("/v1/assets/keep.jpg", content=png_bomb(20000, 20000), headers=AUTH)

    assert r.status_code == 413
    assert client.get("/v1/assets/keep.jpg", headers=AUTH).json() == first.json()
    assert client.get("/t/_/keep.jpg?w=100").status_code == 200
    assert sorted(p.name for p in stored_files(settings.data_dir)) == sorted(
        ["meta.json", f"{first.json()['etag']}.bin"]
    )


@pytest.mark.parametrize(
    ("overrides", "name"),
    [
        ({"max_source_pixels": 6 * ANIM_FRAME_PIXELS}, "anim.gif"),
        ({"max_frames": 6}, "anim.gif"),
        ({"max_source_bytes": len(image("photo.jpg"))}, "photo.jpg"),
    ],
    ids=["pixels", "frames", "bytes"],
)
def test_a_source_exactly_at_a_limit_is_accepted(make_client, overrides, name):
    client = make_client(**overrides)

    r = client.put(f"/v1/assets/{name}", content=image(name), headers=AUTH)

    assert r.status_code == 201, r.text


PROBE_IN_A_CHILD = """
import sys
from server.errors import TooLarge
from server.imaging import vips
from server.imaging.inspect import SourceLimits, probe
from server.settings import Settings

vips.configure()
s = Settings()
data = open(sys.argv[1], "rb").read()
# ru_maxrss survives execve (it would report pytest's own peak): reset this process's
# high-water mark instead, then read it back after the probe.
with open("/proc/self/clear_refs", "w") as f:
    f.write("5")
try:
    probe(data, SourceLimits(s.max_source_bytes, s.max_source_pixels, s.max_frames))
except TooLarge as exc:
    print("refused:", exc)
status = open("/proc/self/status").read()
print(next(line.split()[1] for line in status.splitlines() if line.startswith("VmHWM:")))
"""


@pytest.mark.parametrize("bomb", [png_bomb, jpeg_bomb], ids=["png", "jpeg"])
def test_a_bomb_is_refused_from_its_header_without_a_spike_in_memory(tmp_path, bomb):
    # 20000 x 20000 RGB is 1.2 GB decoded; reading the header costs what importing libvips does.
    path = tmp_path / "bomb"
    path.write_bytes(bomb(20000, 20000))

    child = subprocess.run(
        [sys.executable, "-c", PROBE_IN_A_CHILD, str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=Path(__file__).parent.parent,
        check=False,
    )

    assert child.returncode == 0, child.stderr
    refused, peak_kib = child.stdout.splitlines()
    assert refused.startswith("refused:")
    assert "20000x20000" in refused
    assert int(peak_kib) < 150 * 1024


@pytest.mark.parametrize(
    "settings", [{"max_source_bytes": 50_000}], indirect=True, ids=["max-50000"]
)
def test_a_chunked_upload_is_cut_off_at_the_byte_limit(live_server, settings):
    def chunks(data: bytes):
        for start in range(0, len(data), 8192):
            yield data[start : start + 8192]

    with httpx.Client(base_url=live_server, timeout=30) as http:
        small = http.put("/v1/assets/small.jpg", content=chunks(image("orient6.jpg")), headers=AUTH)
        big = http.put("/v1/assets/big.jpg", content=chunks(image("photo.jpg")), headers=AUTH)

        assert "content-length" not in big.request.headers
        assert big.request.headers["transfer-encoding"] == "chunked"
        assert small.status_code == 201  # a chunked body within the limit is fine
        assert big.status_code == 413
        assert big.json()["error"]["code"] == "source_too_large"
        assert http.get("/v1/assets/big.jpg", headers=AUTH).status_code == 404
    assert not [p for p in stored_files(settings.data_dir) if p.name.startswith(".tmp-")]


def test_a_declared_oversize_upload_is_refused_before_its_body_is_sent(live_server):
    host, port = live_server.removeprefix("http://").split(":")
    request = (
        "PUT /v1/assets/huge.jpg HTTP/1.1\r\n"
        f"Host: {host}\r\n"
        f"Authorization: {AUTH['Authorization']}\r\n"
        "Content-Type: image/jpeg\r\n"
        "Content-Length: 10000000000\r\n"
        "\r\n"
    )
    with socket.create_connection((host, int(port)), timeout=20) as sock:
        sock.sendall(request.encode())  # and not one byte of the 10 GB
        answer = b""
        while b"\r\n\r\n" not in answer:
            chunk = sock.recv(4096)
            if not chunk:
                break
            answer += chunk

    assert answer.startswith(b"HTTP/1.1 413 ")


@pytest.mark.parametrize(
    "settings", [{"render_threads": 1, "max_queue": 0}], indirect=True, ids=["1-thread-0-queue"]
)
def test_a_render_past_a_full_queue_is_429_with_retry_after(live_server, monkeypatch):
    entered, release = threading.Event(), threading.Event()
    real_render = pipeline.render

    def held_render(*args, **kwargs):
        entered.set()
        release.wait(20)
        return real_render(*args, **kwargs)

    with httpx.Client(base_url=live_server, timeout=30) as http:
        upload(http, "photo.jpg", "photo.jpg")
        monkeypatch.setattr(pipeline, "render", held_render)
        first: dict[str, httpx.Response] = {}

        def slow_request() -> None:
            with httpx.Client(base_url=live_server, timeout=30) as other:
                first["r"] = other.get("/t/_/photo.jpg?w=100")

        worker = threading.Thread(target=slow_request)
        worker.start()
        try:
            assert entered.wait(20)
            refused = http.get("/t/_/photo.jpg?w=101")
        finally:
            release.set()
            worker.join(30)
        after = http.get("/t/_/photo.jpg?w=102")

    assert refused.status_code == 429
    assert refused.headers["retry-after"].isdigit()
    assert refused.headers["cache-control"] == "no-store"
    assert refused.json()["error"]["code"] == "queue_full"
    assert first["r"].status_code == 200
    assert after.status_code == 200  # the slot came back


def test_a_held_render_past_the_timeout_is_504_uncached_and_the_server_recovers(
    make_client, monkeypatch
):
    release = threading.Event()
    real_render = pipeline.render

    def held_render(*args, **kwargs):
        release.wait(20)
        return real_render(*args, **kwargs)

    client = make_client(render_threads=1, render_timeout_s=0.2)
    upload(client, "photo.jpg", "photo.jpg")
    monkeypatch.setattr(pipeline, "render", held_render)
    pool = client.app.state.runtime.pool
    try:
        r = client.get("/t/_/photo.jpg?w=100")
    finally:
        release.set()
    monkeypatch.setattr(pipeline, "render", real_render)
    wait_until(lambda: pool.pending == 0, seconds=10)
    after = client.get("/t/_/photo.jpg?w=100")

    assert r.status_code == 504
    assert r.headers["cache-control"] == "no-store"
    assert r.json()["error"]["code"] == "render_timeout"
    assert after.status_code == 200
    assert after.headers["x-cache"] == "miss"  # the timed-out render was not cached


def test_a_heavy_render_past_the_timeout_is_killed_inside_libvips(make_client):
    # Unkilled, this render takes ~30 s on one libvips thread.
    client = make_client(render_threads=1, render_timeout_s=0.5)
    upload(client, "photo.jpg", "photo.jpg")
    pool = client.app.state.runtime.pool

    r = client.get("/t/_/photo.jpg?w=8192&enlarge=1&blur=100")
    wait_until(lambda: pool.pending == 0, seconds=5)  # the thread came back: libvips stopped
    after = client.get("/t/_/photo.jpg?w=100")

    assert r.status_code == 504
    assert r.json()["error"]["code"] == "render_timeout"
    assert after.status_code == 200
    assert after.headers["x-cache"] == "miss"


@pytest.mark.parametrize(
    ("method", "path"),
    [("GET", "/t/_/photo.jpg?w=100"), ("GET", "/v1/assets/photo.jpg"), ("PUT", None)],
    ids=["delivery", "admin-get", "admin-put"],
)
def test_storage_failure_is_503_with_retry_after(client, monkeypatch, method, path):
    upload(client, "photo.jpg", "photo.jpg")
    rt = client.app.state.runtime
    rt.meta_cache.clear()  # what a meta TTL expiry would do

    async def unavailable(asset_id):
        raise StorageUnavailable("storage read failed: Input/output error")

    monkeypatch.setattr(rt.storage, "head", unavailable)
    if method == "PUT":
        r = client.put("/v1/assets/new.jpg", content=image("photo.jpg"), headers=AUTH)
    else:
        r = client.get(path, headers=AUTH)

    assert r.status_code == 503
    assert r.headers["retry-after"].isdigit()
    assert r.headers["cache-control"] == "no-store"
    assert r.json()["error"]["code"] == "storage_unavailable"


def test_readyz_is_503_when_storage_does_not_answer_and_200_when_it_does(client, monkeypatch):
    rt = client.app.state.runtime

    async def unreachable():
        raise StorageUnavailable("data dir is not readable and writable")

    ready = client.get("/readyz")
    monkeypatch.setattr(rt.storage, "ping", unreachable)
    down = client.get("/readyz")

    assert ready.status_code == 200
    assert ready.json()["status"] == "ready"
    assert down.status_code == 503
    assert down.headers["retry-after"].isdigit()
    assert down.json()["error"]["code"] == "storage_unavailable"


def test_readyz_is_503_while_the_data_dir_is_gone(client, settings):
    # What an unmounted volume looks like; unlike chmod, it stops root too.
    shutil.rmtree(settings.data_dir / "assets")
    gone = client.get("/readyz")
    (settings.data_dir / "assets").mkdir()
    back = client.get("/readyz")

    assert gone.status_code == 503
    assert gone.json()["error"]["code"] == "storage_unavailable"
    assert back.status_code == 200
