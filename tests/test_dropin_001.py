"""Seed 001 (compression API, SPEC §10): POST /api/v1/compress over the real app and a real
`imgcdn serve`, on real images: file xor image_url, exact and bounded sizes, quality and
format, the binary answer, and the seed's JSON errors with imgcdn's code inside."""

from __future__ import annotations

from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any, ClassVar

import httpx2 as httpx
import pytest
from conftest import IMAGES, TOKEN, decode, http_origin, loader, wait_until
from starlette.testclient import TestClient
from test_dropin_004 import stored
from test_server import Served, serving

from server.routes import compression

PATH = "/api/v1/compress"
PHOTO = (IMAGES / "photo.jpg").read_bytes()  # 800x600


def post(client: TestClient, data: bytes | None = PHOTO, **fields: object) -> Any:
    files = {"file": ("photo.jpg", data, "image/jpeg")} if data is not None else None
    form = {k: str(v) for k, v in fields.items()}
    return client.post(f"{PATH}?appkey={TOKEN}", data=form, files=files)


def image_of(r: Any) -> Any:
    assert r.status_code == 200, r.text
    return decode(r.content)


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    with serving(tmp_path_factory.mktemp("seed001")) as s:
        yield s


def test_the_seeds_request_over_imgcdn_serve_answers_the_compressed_bytes(served: Served) -> None:
    key = served.new_key("seed-001")
    # The seed's fields as its users send them: appkey, a multipart file, a bound, quality
    # and format; only the base URL and the key are imgcdn's.
    r = httpx.post(
        f"{served.base}{PATH}",
        params={"appkey": key},
        files={"file": ("photo.jpg", PHOTO, "image/jpeg")},
        data={"maxWidth": "400", "quality": "60", "format": "webp"},
        timeout=30,
    )
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "image/webp"
    image = decode(r.content)
    assert (image.width, image.height) == (400, 300) and loader(r.content) == "webp"
    assert len(r.content) < len(PHOTO) / 2
    # The key as a multipart field works the same; a wrong one is the seed's 401.
    r = httpx.post(
        f"{served.base}{PATH}",
        files={"file": ("photo.jpg", PHOTO, "image/jpeg")},
        data={"appkey": key, "targetWidth": "100"},
        timeout=30,
    )
    assert decode(r.content).width == 100
    r = httpx.post(f"{served.base}{PATH}?appkey=wrong", files={"file": ("a", PHOTO)}, timeout=30)
    assert r.status_code == 401 and r.json()["code"] == 401
    assert "Traceback" not in served.log()


@pytest.mark.parametrize(
    ("fields", "size"),
    [
        ({"targetWidth": 200, "targetHeight": 200}, (200, 200)),  # exact: cropped to fill
        ({"targetWidth": 1600}, (1600, 1200)),  # exact, enlarged, height by the aspect
        ({"targetHeight": 150}, (200, 150)),
        ({"maxWidth": 400, "maxHeight": 100}, (133, 100)),  # bounds, aspect kept
        ({"maxWidth": 2000}, (800, 600)),  # a bound never enlarges
        ({"maxWidth": 10000, "maxHeight": 65000}, (800, 600)),  # past the server's side: none
        ({}, (800, 600)),
    ],
)
def test_sizes_follow_the_seeds_target_and_max_fields(
    client: TestClient, fields: dict[str, int], size: tuple[int, int]
) -> None:
    image = image_of(post(client, **fields))
    assert (image.width, image.height) == size


def test_both_targets_crop_rather_than_stretch(client: TestClient) -> None:
    # 800x600 into 300x300 with the aspect kept: scaled to 400x300, the middle 300 kept.
    square = image_of(post(client, targetWidth=300, targetHeight=300, format="png"))
    photo = decode(PHOTO)
    cropped = photo.crop(100, 0, 600, 600).resize(0.5)
    stretched = photo.resize(300 / 800, vscale=0.5)
    assert (square - cropped).abs().avg() < 4 < (square - stretched).abs().avg()


def test_quality_and_format_choose_the_encoding(client: TestClient) -> None:
    low, high = post(client, quality=5), post(client, quality=95)
    assert len(low.content) < len(high.content) / 3
    for fmt, mime in (("png", "image/png"), ("JPEG", "image/jpeg"), ("avif", "image/avif")):
        r = post(client, format=fmt, maxWidth=64)
        assert r.status_code == 200 and r.headers["content-type"] == mime, r.text


class _Photo(BaseHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "image/jpeg")
        self.send_header("Content-Length", str(len(PHOTO)))
        self.end_headers()
        self.wfile.write(PHOTO)


@pytest.fixture
def photo_url() -> Iterator[str]:
    with http_origin(_Photo, "/photo.jpg") as url:
        yield url


def test_image_url_works_as_a_form_field_and_in_json(make_client: Any, photo_url: str) -> None:
    client = make_client(allow_private_sources=True)
    r = client.post(PATH, data={"appkey": TOKEN, "image_url": photo_url, "maxWidth": "80"})
    assert image_of(r).width == 80
    r = client.post(PATH, json={"appkey": TOKEN, "image_url": photo_url, "targetHeight": 30})
    assert image_of(r).height == 30


class _Endless(BaseHTTPRequestHandler):
    """A JPEG-looking body of up to 64 MB with no Content-Length: only the reader's own
    count can stop it. `sent` records how much got out before the reader hung up."""

    sent: ClassVar[list[int]] = []

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "image/jpeg")
        self.end_headers()
        chunk, written = b"\xff\xd8\xff" + bytes(1024 * 1024 - 3), 0
        try:
            while written < 64 * 1024 * 1024:
                self.wfile.write(chunk)
                written += len(chunk)
        except OSError:
            pass
        finally:
            self.sent.append(written)


def test_a_fetched_image_stops_at_the_seeds_10_mb_not_the_servers_limit(make_client: Any) -> None:
    client = make_client(allow_private_sources=True)  # IMGCDN_MAX_SOURCE_BYTES: 50 MB
    with http_origin(_Endless, "/big.jpg") as url:
        r = client.post(PATH, data={"appkey": TOKEN, "image_url": url})
        assert error_of(r, 400)["error"] == "source_too_large"
        assert error_of(r, 400)["param"] == "image_url"
        wait_until(lambda: bool(_Endless.sent), 10)
        # 10 MiB read, plus what the loopback's socket buffers took: far below 50 MB.
        assert _Endless.sent and _Endless.sent[0] < 30 * 1024 * 1024


def error_of(r: Any, status: int) -> dict[str, Any]:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/json")
    body: dict[str, Any] = r.json()
    assert body["code"] == status and body["message"] and body["error"]
    return body


@pytest.mark.parametrize(
    ("data", "fields", "status", "code", "param"),
    [
        (PHOTO, {"image_url": "http://127.0.0.1:9/a.jpg"}, 400, "invalid_param", "image_url"),
        (None, {"maxWidth": 10}, 400, "invalid_param", "file"),
        (None, {"image_url": "http://127.0.0.1:9/a.jpg"}, 400, "source_forbidden", "image_url"),
        (PHOTO, {"quality": 96}, 400, "invalid_param", "quality"),
        (PHOTO, {"quality": 0}, 400, "invalid_param", "quality"),
        (PHOTO, {"targetWidth": 10, "maxWidth": 20}, 400, "invalid_param", "maxWidth"),
        (PHOTO, {"format": "tiff"}, 400, "invalid_param", "format"),
        (PHOTO, {"width": 10}, 400, "invalid_param", "width"),
        (b"not an image", {}, 400, "unsupported_format", "file"),  # imgcdn's 415
        (b"\xff\xd8\xff" + bytes(compression.MAX_BYTES), {}, 400, "source_too_large", None),
    ],
)
def test_bad_input_is_the_seeds_json_error_with_imgcdns_code_and_nothing_is_stored(
    client: TestClient,
    settings: Any,
    data: bytes | None,
    fields: dict[str, object],
    status: int,
    code: str,
    param: str | None,
) -> None:
    body = error_of(post(client, data, **fields), status)
    assert body["error"] == code and body.get("param") == param
    assert stored(Path(settings.data_dir)) == []


def test_a_missing_key_is_401_and_a_disabled_one_403(client: TestClient) -> None:
    r = client.post(PATH, files={"file": ("a.jpg", PHOTO)})
    assert error_of(r, 401)["error"] == "unauthorized"
    made = client.post(
        "/v1/keys", json={"name": "off"}, headers={"Authorization": f"Bearer {TOKEN}"}
    )
    client.patch(
        f"/v1/keys/{made.json()['id']}",
        json={"state": "disabled"},
        headers={"Authorization": f"Bearer {TOKEN}"},
    )
    r = client.post(f"{PATH}?appkey={made.json()['key']}", files={"file": ("a.jpg", PHOTO)})
    assert error_of(r, 403)["error"] == "key_disabled"


def test_a_rate_limited_key_is_429_with_retry_after(client: TestClient) -> None:
    made = client.post(
        "/v1/keys",
        json={"name": "slow", "rate_per_s": 0.01, "burst": 1},
        headers={"Authorization": f"Bearer {TOKEN}"},
    ).json()
    first = client.post(f"{PATH}?appkey={made['key']}", files={"file": ("a.jpg", PHOTO)})
    assert first.status_code == 200
    r = client.post(f"{PATH}?appkey={made['key']}", files={"file": ("a.jpg", PHOTO)})
    assert error_of(r, 429)["error"] == "rate_limited" and int(r.headers["retry-after"]) > 0


def test_an_idempotency_key_replays_the_first_answer(client: TestClient) -> None:
    headers = {"Idempotency-Key": "seed-001-once"}
    url = f"{PATH}?appkey={TOKEN}"
    first = client.post(
        url, files={"file": ("a.jpg", PHOTO)}, data={"maxWidth": "50"}, headers=headers
    )
    again = client.post(
        url, files={"file": ("a.jpg", PHOTO)}, data={"maxWidth": "50"}, headers=headers
    )
    assert first.status_code == again.status_code == 200
    assert again.headers["idempotent-replayed"] == "true" and again.content == first.content
    for fact in ("x-image-width", "x-image-height"):  # the docs promise them on every 200
        assert again.headers[fact] == first.headers[fact]
    other = client.post(
        url, files={"file": ("a.jpg", PHOTO)}, data={"maxWidth": "60"}, headers=headers
    )
    assert error_of(other, 400)["error"] == "idempotency_key_reused"


def test_a_target_past_the_servers_largest_side_is_a_400_naming_the_seeds_field(
    client: TestClient,
) -> None:
    r = post(client, targetWidth=20000)
    body = error_of(r, 400)
    assert (body["error"], body["param"]) == ("invalid_param", "targetWidth")
    assert "1..8192" in body["message"]  # this server's IMGCDN_MAX_OUTPUT_SIDE, not 65500
