"""Shared fixtures: the real app over real libvips, on the small real images in tests/images."""

from __future__ import annotations

import contextlib
import os
import socket
import struct
import threading
import time
import zlib
from collections.abc import Callable, Iterator
from dataclasses import replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, TypeVar

import httpx2 as httpx
import pytest
import pyvips
import uvicorn
from hypothesis import settings as hypothesis_settings
from redisproc import RedisProcess
from starlette.testclient import TestClient
from starlette.types import ASGIApp

from server.app import create_app
from server.errors import ImgcdnError
from server.settings import Settings

T = TypeVar("T")
IMAGES = Path(__file__).parent / "images"
TOKEN = "test-admin-token-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}

# Property tests (tests/test_properties_*.py). "ci" is the default everywhere: the same
# examples every run (seeded from each test), no example database, so a red CI is
# reproducible; a property that needs fewer examples says so itself. "dev" draws anew each
# run; "deep" is the long search to run by hand before a release:
#   HYPOTHESIS_PROFILE=deep .venv/bin/pytest -q -p no:cacheprovider tests/test_properties_*.py
hypothesis_settings.register_profile(
    "ci", max_examples=300, deadline=None, derandomize=True, database=None, print_blob=True
)
hypothesis_settings.register_profile("dev", max_examples=300, deadline=None, database=None)
hypothesis_settings.register_profile("deep", max_examples=20_000, deadline=None, database=None)
hypothesis_settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(data_dir=tmp_path / "data", admin_tokens=(TOKEN,), render_threads=2)


def client_factory(
    settings: Settings, app_factory: Callable[[Settings], ASGIApp] = create_app
) -> Iterator[Callable[..., TestClient]]:
    """Yields a factory for clients over `app_factory`'s app (the real one by default), with
    settings overridden per client; every client's lifespan is closed afterwards."""
    clients: list[TestClient] = []

    def make(**overrides: object) -> TestClient:
        client = TestClient(app_factory(replace(settings, **overrides)))  # type: ignore[arg-type]
        client.__enter__()  # runs the lifespan
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.__exit__(None, None, None)


@pytest.fixture
def make_client(settings: Settings) -> Iterator[Callable[..., TestClient]]:
    """A factory for clients over the real app, with settings overridden per test."""
    yield from client_factory(settings)


@pytest.fixture
def client(make_client: Callable[..., TestClient]) -> TestClient:
    return make_client()


def upload(client: TestClient | httpx.Client, asset_id: str, name: str) -> httpx.Response:
    r = client.put(f"/v1/assets/{asset_id}", content=(IMAGES / name).read_bytes(), headers=AUTH)
    assert r.status_code in (200, 201), r.text
    return r


@pytest.fixture
def uploaded(client: TestClient) -> TestClient:
    """A client whose store holds every test image under its own file name."""
    for name in ("photo.jpg", "orient6.jpg", "cmyk.jpg", "p3.jpg", "alpha.png", "anim.gif"):
        upload(client, name, name)
    return client


def error_body(r: httpx.Response, status: int) -> dict[str, Any]:
    """The SPEC §4 error body of `r`, after checking its status and headers."""
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/json")
    assert r.headers["cache-control"] == "no-store"
    body: dict[str, Any] = r.json()["error"]
    assert body["code"] and body["message"]
    return body


def attempt(call: Callable[[], T]) -> T | ImgcdnError:
    """What `call` returns, or the ImgcdnError it raises: a property asserts on either, and
    any other exception fails the test, as it should."""
    try:
        return call()
    except ImgcdnError as exc:
        return exc


def decode(body: bytes) -> pyvips.Image:
    """The image in `body`, every frame of an animation stacked (page-height apart)."""
    image = pyvips.Image.new_from_buffer(body, "")
    if "n-pages" in image.get_fields() and image.get("n-pages") > 1:
        image = pyvips.Image.new_from_buffer(body, "", n=-1)
    return image


def loader(body: bytes) -> str:
    return str(decode(body).get("vips-loader")).removesuffix("_buffer").removesuffix("load")


def png_bomb(width: int, height: int) -> bytes:
    """A tiny valid-header PNG declaring width x height RGB pixels."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data) & 0xFFFFFFFF
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(b"\0" * 64))
        + chunk(b"IEND", b"")
    )


def jpeg_bomb(width: int, height: int) -> bytes:
    """A real 16x16 JPEG whose SOF0 header is rewritten to declare width x height."""
    small = bytearray(pyvips.Image.black(16, 16, bands=3).jpegsave_buffer(Q=50))
    sof = small.index(b"\xff\xc0")
    small[sof + 5 : sof + 9] = struct.pack(">HH", height, width)
    return bytes(small)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisProcess]:
    """One real redis-server for the session (tests/redisproc.py); tests that kill or pause
    Redis take `own_redis` instead, so they never disturb the others."""
    server = RedisProcess(tmp_path_factory.mktemp("redis"))
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def redis_url(redis_server: RedisProcess) -> str:
    """The session's Redis, emptied for this test."""
    assert redis_server.command("FLUSHALL").startswith(b"+OK")
    return redis_server.url


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[RedisProcess]:
    """A redis-server of this test's own, to kill, restart, pause and resume."""
    server = RedisProcess(tmp_path / "redis")
    server.folder.mkdir()
    server.start()
    try:
        yield server
    finally:
        server.stop()


@contextlib.contextmanager
def http_origin(handler: type[BaseHTTPRequestHandler], path: str = "/") -> Iterator[str]:
    """A local HTTP server running `handler` in threads, for image_url sources; yields the
    URL of `path` on it (127.0.0.1: tests allow private sources to reach it)."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_port}{path}"
    finally:
        server.shutdown()
        server.server_close()


def wait_until(check: Callable[[], bool], seconds: float = 20.0) -> None:
    """Poll `check` until it is true, or fail at the deadline."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.02)
    raise AssertionError(f"not true within {seconds} s")


@contextlib.contextmanager
def serving_in_thread(app: ASGIApp) -> Iterator[str]:
    """`app` under a real uvicorn on a free port, in a thread; yields its base URL."""
    port = free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    wait_until(lambda: server.started)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=30)


@pytest.fixture
def live_server(settings: Settings) -> Iterator[str]:
    """The app under a real uvicorn on a free port, in a thread; yields its base URL."""
    with serving_in_thread(create_app(settings)) as base:
        yield base
