"""The processing API (SPEC §6): every op on a real photo, process chains in order, image
references, result modes, one result per identical request, and every bad input a 4xx."""

from __future__ import annotations

import base64
import re
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx2 as httpx
import pytest
import pyvips
from conftest import AUTH, IMAGES, decode, error_body, jpeg_bomb, png_bomb, upload
from starlette.testclient import TestClient

from server.results import object_keys

PHOTO = (IMAGES / "photo.jpg").read_bytes()  # 800 x 600
B64 = base64.b64encode(PHOTO).decode()


def post(client: TestClient, path: str, body: dict[str, Any], **kw: Any) -> httpx.Response:
    return client.post(
        f"/v1/image/{path}", json=body, headers={**AUTH, **kw.pop("headers", {})}, **kw
    )


def rendered(client: TestClient, path: str, body: dict[str, Any]) -> tuple[pyvips.Image, bytes]:
    r = post(client, path, {**body, "output": {"return": "base64"}})
    assert r.status_code == 200, r.text
    data = base64.b64decode(r.json()["base64"])
    assert r.json()["bytes"] == len(data)
    image = decode(data)
    assert (r.json()["width"], r.json()["height"]) == (image.width, image.height)
    return image, data


def renders(client: TestClient) -> float:
    text = client.get("/metrics").text
    found = re.findall(r"^imgcdn_render_seconds_count\{[^}]*\} ([0-9.e+]+)$", text, re.MULTILINE)
    return sum(float(v) for v in found)


# -- each op, on the real photo ------------------------------------------------------------


@pytest.mark.parametrize(
    ("params", "size"),
    [
        ({"width": 200}, (200, 150)),
        ({"height": 60}, (80, 60)),
        ({"width": 100, "height": 100}, (100, 100)),  # cover by default with both sides
        ({"width": 100, "height": 100, "fit": "inside"}, (100, 75)),
        ({"width": 100, "height": 100, "fit": "contain"}, (100, 100)),
        ({"width": 100, "height": 100, "fit": "fill"}, (100, 100)),
        ({"width": 1600}, (800, 600)),  # never enlarged unless asked
        ({"width": 1600, "enlarge": True}, (1600, 1200)),
    ],
)
def test_resize_gives_the_size_its_fit_promises(
    client: TestClient, params: dict[str, Any], size: tuple[int, int]
) -> None:
    image, _ = rendered(client, "resize", {"image": {"base64": B64}, **params})
    assert (image.width, image.height) == size


def test_resize_contain_pads_with_the_background_colour(client: TestClient) -> None:
    body = {"image": {"base64": B64}, "width": 100, "height": 100, "fit": "contain"}
    image, _ = rendered(client, "resize", {**body, "background": "ff0000", "format": "png"})
    top = image.crop(0, 0, 100, 5)  # 4:3 in a square: bands above and below are padding
    assert [round(top.extract_band(b).avg()) for b in range(3)] == [255, 0, 0]


def test_crop_cuts_the_box_in_upright_source_pixels(client: TestClient) -> None:
    image, _ = rendered(
        client, "crop", {"image": {"base64": B64}, "x": 100, "y": 50, "width": 300, "height": 200}
    )
    assert (image.width, image.height) == (300, 200)
    original = pyvips.Image.new_from_buffer(PHOTO, "").crop(100, 50, 300, 200)
    assert abs(image.avg() - original.avg()) < 2


def test_crop_is_clamped_to_the_image_and_refused_outside_it(client: TestClient) -> None:
    image, _ = rendered(
        client, "crop", {"image": {"base64": B64}, "x": 700, "y": 500, "width": 300, "height": 300}
    )
    assert (image.width, image.height) == (100, 100)
    r = post(
        client, "crop", {"image": {"base64": B64}, "x": 900, "y": 0, "width": 10, "height": 10}
    )
    assert error_body(r, 400)["code"] == "invalid_param"


def test_smart_crop_takes_the_largest_window_of_the_aspect(client: TestClient) -> None:
    image, _ = rendered(client, "smart_crop", {"image": {"base64": B64}, "aspect": "1:1"})
    assert (image.width, image.height) == (600, 600)
    image, _ = rendered(
        client, "smart_crop", {"image": {"base64": B64}, "aspect": "16:9", "width": 320}
    )
    assert (image.width, image.height) == (320, 180)


def test_rotate_turns_clockwise_and_grows_the_canvas_for_free_angles(client: TestClient) -> None:
    image, _ = rendered(client, "rotate", {"image": {"base64": B64}, "degrees": 90})
    assert (image.width, image.height) == (600, 800)
    image, _ = rendered(client, "rotate", {"image": {"base64": B64}, "degrees": -270})
    assert (image.width, image.height) == (600, 800)  # -270 is 90 clockwise
    image, _ = rendered(client, "rotate", {"image": {"base64": B64}, "degrees": 45})
    assert image.width == image.height and image.width > 900


def test_rotate_auto_orient_false_keeps_the_stored_orientation(client: TestClient) -> None:
    turned = base64.b64encode((IMAGES / "orient6.jpg").read_bytes()).decode()
    stored = pyvips.Image.new_from_buffer(base64.b64decode(turned), "")
    upright, _ = rendered(client, "rotate", {"image": {"base64": turned}, "degrees": 0})
    as_stored, _ = rendered(
        client, "rotate", {"image": {"base64": turned}, "degrees": 0, "auto_orient": False}
    )
    assert (as_stored.width, as_stored.height) == (stored.width, stored.height)
    assert (upright.width, upright.height) == (stored.height, stored.width)


@pytest.mark.parametrize("direction", ["h", "v", "hv", "horizontal"])
def test_flip_mirrors(client: TestClient, direction: str) -> None:
    image, _ = rendered(client, "flip", {"image": {"base64": B64}, "direction": direction})
    original = pyvips.Image.new_from_buffer(PHOTO, "")
    expected = original.fliphor() if direction in ("h", "hv", "horizontal") else original
    expected = expected.flipver() if "v" in direction and direction != "horizontal" else expected
    assert (image - expected).abs().avg() < 3  # only JPEG noise apart


@pytest.mark.parametrize("fmt", ["jpeg", "webp", "avif", "png"])
def test_compress_target_bytes_gives_the_best_quality_that_fits(
    client: TestClient, fmt: str
) -> None:
    small = {"image": {"base64": B64}, "ops": [{"op": "resize", "params": {"width": 200}}]}
    target = 20_000 if fmt == "png" else 6000  # a palette PNG of a photo is larger
    r = post(
        client,
        "process",
        {
            **small,
            "ops": [
                *small["ops"],
                {"op": "compress", "params": {"target_bytes": target, "format": fmt}},
            ],
            "output": {"return": "base64"},
        },
    )
    assert r.status_code == 200, r.text
    data = base64.b64decode(r.json()["base64"])
    assert len(data) <= target and r.json()["mime"] == f"image/{fmt}"
    assert decode(data).width == 200


def test_compress_to_an_unreachable_size_is_422_target_unreachable(client: TestClient) -> None:
    r = post(client, "compress", {"image": {"base64": B64}, "target_bytes": 1024, "format": "png"})
    body = error_body(r, 422)
    assert (body["code"], body["param"]) == ("target_unreachable", "target_bytes")


def test_compress_quality_zero_is_read_as_the_lowest_quality(client: TestClient) -> None:
    _, low = rendered(client, "compress", {"image": {"base64": B64}, "quality": 0})
    _, one = rendered(client, "compress", {"image": {"base64": B64}, "quality": 1})
    _, high = rendered(client, "compress", {"image": {"base64": B64}, "quality": 95})
    assert len(low) == len(one) < len(high)


@pytest.mark.parametrize("fmt", ["jpeg", "jpg", "png", "webp", "avif", "gif"])
def test_convert_changes_the_format(client: TestClient, fmt: str) -> None:
    r = post(client, "convert", {"image": {"base64": B64}, "format": fmt})
    assert r.status_code == 200, r.text
    assert r.json()["mime"] == "image/" + ("jpeg" if fmt == "jpg" else fmt)


@pytest.mark.parametrize(
    ("position", "corner"),
    [
        ("top-left", (0, 0)),
        ("top_left", (0, 0)),
        ("bottom-right", (600, 450)),
        ("center", (300, 225)),
    ],
)
def test_watermark_text_lands_where_position_says(
    client: TestClient, position: str, corner: tuple[int, int]
) -> None:
    body = {"image": {"base64": B64}, "text": "imgcdn", "position": position, "opacity": 1}
    image, _ = rendered(client, "watermark", {**body, "color": "ff00ff", "format": "png"})
    original = pyvips.Image.new_from_buffer(PHOTO, "")
    diff = (image - original).abs()
    inside = diff.crop(corner[0], corner[1], 200, 150).avg()
    assert inside > 3 * diff.avg()  # the mark is in that region, not spread over the image


def test_watermark_image_comes_from_an_image_reference(client: TestClient) -> None:
    mark = base64.b64encode((IMAGES / "alpha.png").read_bytes()).decode()
    body = {"image": {"base64": B64}, "watermark_image": {"base64": mark}, "opacity": 1}
    image, _ = rendered(client, "watermark", {**body, "position": "top_left", "format": "png"})
    diff = (image - pyvips.Image.new_from_buffer(PHOTO, "")).abs()
    assert diff.crop(0, 0, 220, 220).avg() > 4 * diff.crop(500, 350, 300, 250).avg()


def test_watermark_needs_exactly_one_of_text_or_image(client: TestClient) -> None:
    body = error_body(post(client, "watermark", {"image": {"base64": B64}}), 400)
    assert body["param"] == "text"


@pytest.mark.parametrize(("op", "params"), [("blur", {"sigma": 4}), ("sharpen", {"sigma": 1})])
def test_blur_and_sharpen_change_the_detail(
    client: TestClient, op: str, params: dict[str, Any]
) -> None:
    image, _ = rendered(client, op, {"image": {"base64": B64}, **params, "format": "png"})
    original = pyvips.Image.new_from_buffer(PHOTO, "")
    detail = image.colourspace("b-w").sobel().avg()
    before = original.colourspace("b-w").sobel().avg()
    assert detail < 0.7 * before if op == "blur" else detail > before


def test_trim_cuts_a_uniform_border(client: TestClient) -> None:
    framed = pyvips.Image.new_from_buffer(PHOTO, "").embed(
        50, 40, 900, 680, extend="background", background=[255, 255, 255]
    )
    data = base64.b64encode(framed.pngsave_buffer()).decode()
    image, _ = rendered(client, "trim", {"image": {"base64": data}})
    assert abs(image.width - 800) <= 4 and abs(image.height - 600) <= 4


# -- process: steps in order, one encode -----------------------------------------------------


def test_process_runs_steps_in_the_order_given(client: TestClient) -> None:
    resize_then_crop = [
        {"op": "resize", "params": {"width": 400}},
        {"op": "crop", "params": {"x": 0, "y": 0, "width": 300, "height": 300}},
    ]
    a, _ = rendered(client, "process", {"image": {"base64": B64}, "ops": resize_then_crop})
    b, _ = rendered(client, "process", {"image": {"base64": B64}, "ops": resize_then_crop[::-1]})
    assert (a.width, a.height) == (b.width, b.height) == (300, 300)  # never enlarged
    photo = pyvips.Image.new_from_buffer(PHOTO, "")
    halved = photo.resize(0.5).crop(0, 0, 300, 300)  # a: 3/4 of the width, halved
    corner = photo.crop(0, 0, 300, 300)  # b: the corner at full size
    assert (a - halved).abs().avg() < (a - corner).abs().avg()
    assert (b - corner).abs().avg() < (b - halved).abs().avg()


def test_process_encodes_with_the_last_format_and_the_top_level_has_the_last_word(
    client: TestClient,
) -> None:
    ops = [
        {"op": "convert", "params": {"format": "png"}},
        {"op": "compress", "params": {"quality": 50, "format": "webp"}},
    ]
    r = post(client, "process", {"image": {"base64": B64}, "ops": ops})
    assert r.json()["mime"] == "image/webp"
    r = post(client, "process", {"image": {"base64": B64}, "ops": ops, "format": "avif"})
    assert r.json()["mime"] == "image/avif"


def test_process_without_ops_takes_the_seed_tables_width_and_format(client: TestClient) -> None:
    image, data = rendered(
        client, "process", {"input": {"base64": B64}, "width": 160, "format": "webp", "quality": 70}
    )
    assert image.width == 160 and data[8:12] == b"WEBP"


def test_an_animation_keeps_its_frames_through_a_chain(client: TestClient) -> None:
    gif = base64.b64encode((IMAGES / "anim.gif").read_bytes()).decode()
    ops = [{"op": "resize", "params": {"width": 40}}, {"op": "flip", "params": {"direction": "h"}}]
    r = post(
        client, "process", {"image": {"base64": gif}, "ops": ops, "output": {"return": "base64"}}
    )
    assert r.status_code == 200, r.text
    image = decode(base64.b64decode(r.json()["base64"]))
    assert image.get("n-pages") > 1 and image.width == 40


@pytest.mark.parametrize(
    ("ops", "param"),
    [
        ([{"op": "resize", "params": {"width": 0}}], "ops[0].params.width"),
        (
            [{"op": "flip", "params": {"direction": "h"}}, {"op": "resize", "params": {}}],
            "ops[1].params.width",
        ),
        ([{"op": "rotate", "params": {}}], "ops[0].params.degrees"),
        ([{"op": "resize", "params": {"width": 10, "colour": 1}}], "ops[0].params.colour"),
        ([{"op": "explode", "params": {}}], "ops[0].op"),
        ([{"params": {}}], "ops[0].op"),
        ([{"op": "blur", "params": []}], "ops[0].params"),
        ([{"op": "blur", "params": {"sigma": "x"}}], "ops[0].params.sigma"),
        (
            [{"op": "crop", "params": {"x": 0, "y": 0, "width": 1.5, "height": 1}}],
            "ops[0].params.width",
        ),
        ([{"op": "compress", "params": {"quality": 101}}], "ops[0].params.quality"),
        (
            [{"op": "watermark", "params": {"text": "a", "position": "middle"}}],
            "ops[0].params.position",
        ),
        (
            [{"op": "watermark", "params": {"watermark_image": {"path": "/etc/passwd"}}}],
            "ops[0].params.watermark_image.path",
        ),
        ([{"op": "resize", "params": {"width": 10}}] * 33, "ops"),
        ("resize", "ops"),
    ],
)
def test_every_step_is_validated_before_any_work_naming_its_param(
    client: TestClient, ops: object, param: str
) -> None:
    # The image is a URL nobody may fetch: a refusal of the step proves no fetch was tried.
    r = post(client, "process", {"image": {"url": "http://10.0.0.1/x.jpg"}, "ops": ops})
    body = error_body(r, 400)
    assert (body["code"], body["param"]) == ("invalid_op", param), body
    assert param in body["message"]


def test_ops_and_a_top_level_width_together_are_refused(client: TestClient) -> None:
    r = post(client, "process", {"image": {"base64": B64}, "ops": [], "width": 10})
    assert error_body(r, 400)["param"] == "width"


# -- image references ---------------------------------------------------------------------------


class _Origin(BaseHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        self.server.hits += 1  # type: ignore[attr-defined]
        status, body = (200, PHOTO) if self.path == "/photo.jpg" else (404, b"no")
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture
def origin() -> Iterator[ThreadingHTTPServer]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Origin)
    server.hits = 0  # type: ignore[attr-defined]
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server
    server.shutdown()
    server.server_close()


def test_every_form_of_image_reference_gives_the_same_result(
    make_client: Any, origin: ThreadingHTTPServer
) -> None:
    client = make_client(allow_private_sources=True)
    upload(client, "refs/photo.jpg", "photo.jpg")
    url = f"http://127.0.0.1:{origin.server_port}/photo.jpg"
    forms: list[object] = [
        {"url": url},
        url,
        {"base64": B64},
        {"base64": "data:image/jpeg;base64," + B64},
        "data:image/jpeg;base64," + B64,
        {"base64": base64.urlsafe_b64encode(PHOTO).decode().rstrip("=")},
        {"id": "refs/photo.jpg"},
        "refs/photo.jpg",
    ]
    urls = set()
    for form in forms:
        r = post(client, "resize", {"image": form, "width": 50})
        assert r.status_code == 200, (form, r.text)
        urls.add(r.json()["image_url"].split("?")[0])
    assert len(urls) == 1  # the same bytes and ops: one result
    r = client.post(
        "/v1/image/resize",
        files={"file": ("x.jpg", PHOTO, "image/jpeg")},
        data={"width": "50"},
        headers=AUTH,
    )
    assert r.status_code == 200 and r.json()["image_url"].split("?")[0] in urls


@pytest.mark.parametrize(
    ("image", "status", "code", "param"),
    [
        ({"base64": "<...>"}, 400, "invalid_param", "image.base64"),
        ({"url": "file:///etc/passwd"}, 400, "invalid_url", "image.url"),
        ({"url": "http://127.0.0.1/x.jpg"}, 403, "source_forbidden", "image.url"),
        ({"url": "http://169.254.169.254/latest/meta-data"}, 403, "source_forbidden", "image.url"),
        ("http://[::ffff:127.0.0.1]/x", 403, "source_forbidden", "image.url"),
        ({"id": "missing.jpg"}, 404, "asset_not_found", "image.id"),
        ({"id": "../etc/passwd"}, 400, "invalid_param", "image.id"),
        ({"url": "x", "id": "y"}, 400, "invalid_param", "image"),
        ({}, 400, "invalid_param", "image"),
        ({"path": "/etc/passwd"}, 400, "invalid_param", "image.path"),
        (42, 400, "invalid_param", "image"),
        ("data:image/png,raw", 400, "invalid_param", "image"),
    ],
)
def test_a_bad_image_reference_is_a_4xx_naming_it(
    client: TestClient, image: object, status: int, code: str, param: str | None
) -> None:
    body = error_body(post(client, "resize", {"image": image, "width": 10}), status)
    assert (body["code"], body.get("param")) == (code, param)


def test_a_watermark_url_goes_through_the_same_ssrf_guard(client: TestClient) -> None:
    ops = [{"op": "watermark", "params": {"watermark_image": {"url": "http://127.0.0.1:1/m.png"}}}]
    body = error_body(post(client, "process", {"image": {"base64": B64}, "ops": ops}), 403)
    assert body["param"] == "ops[0].params.watermark_image.url"


def test_image_and_input_together_are_refused(client: TestClient) -> None:
    r = post(client, "resize", {"image": {"base64": B64}, "input": {"base64": B64}, "width": 9})
    assert error_body(r, 400)["param"] == "input"


@pytest.mark.parametrize(
    ("data", "status", "code"),
    [
        (PHOTO[: len(PHOTO) // 2], 422, "undecodable"),
        (b"not an image at all", 415, "unsupported_format"),
        (b"%PDF-1.4 " + PHOTO, 415, "unsupported_format"),
        (png_bomb(30_000, 30_000), 413, "source_too_large"),
        (jpeg_bomb(60_000, 60_000), 413, "source_too_large"),
    ],
)
def test_hostile_inputs_are_refused_and_nothing_is_kept(
    client: TestClient, data: bytes, status: int, code: str
) -> None:
    before = renders(client)
    body = {"image": {"base64": base64.b64encode(data).decode()}, "width": 100}
    assert error_body(post(client, "resize", body), status)["code"] == code
    assert client.get("/v1/assets", headers=AUTH).json()["items"] == []
    assert renders(client) == before or code == "undecodable"


# -- results: modes, and one result per identical request -------------------------------------


def test_a_second_identical_request_renders_nothing(client: TestClient) -> None:
    body = {"image": {"base64": B64}, "ops": [{"op": "resize", "params": {"width": 123}}]}
    first = post(client, "process", body)
    before = renders(client)
    second = post(client, "process", body)
    assert first.status_code == second.status_code == 200
    assert (first.headers["x-cache"], second.headers["x-cache"]) == ("miss", "hit-result")
    assert renders(client) == before
    assert first.json()["image_url"].split("?")[0] == second.json()["image_url"].split("?")[0]
    # Written out or left to its default, the same work is the same result.
    spelled = {**body, "ops": [{"op": "resize", "params": {"width": 123, "enlarge": False}}]}
    assert post(client, "process", spelled).headers["x-cache"] == "hit-result"


def test_binary_output_by_return_or_accept(client: TestClient) -> None:
    r = post(client, "resize", {"image": {"base64": B64}, "width": 64, "return": "binary"})
    assert r.headers["content-type"] == "image/jpeg" and decode(r.content).width == 64
    r = post(
        client, "resize", {"image": {"base64": B64}, "width": 64}, headers={"Accept": "image/*"}
    )
    assert r.headers["content-type"] == "image/jpeg"
    assert r.headers["x-image-width"] == "64"
    r = client.post(
        "/v1/image/resize?return=binary", json={"image": {"base64": B64}, "width": 64}, headers=AUTH
    )
    assert r.headers["content-type"] == "image/jpeg"


def test_multipart_takes_form_fields_and_ops_as_json_text(client: TestClient) -> None:
    ops = '[{"op": "resize", "params": {"width": 90}}, {"op": "convert", "params": {"format": "png"}}]'  # noqa: E501
    r = client.post(
        "/v1/image/process",
        files={"image": ("p.jpg", PHOTO, "image/jpeg")},
        data={"ops": ops, "return": "binary"},
        headers=AUTH,
    )
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "image/png" and decode(r.content).width == 90
    r = client.post(
        "/v1/image/resize",
        files={"image": ("p.jpg", PHOTO, "image/jpeg")},
        data={"width": "30", "output": '{"return": "base64"}'},
        headers=AUTH,
    )
    assert r.status_code == 200 and r.json()["width"] == 30 and "base64" in r.json()
    r = client.post(
        "/v1/image/resize",
        files={"image": ("p.jpg", PHOTO, "image/jpeg")},
        data={"width": "ninety"},
        headers=AUTH,
    )
    assert error_body(r, 400)["param"] == "width"
    r = client.post(
        "/v1/image/process",
        files={"image": ("p.jpg", PHOTO, "image/jpeg")},
        data={"ops": "[{"},
        headers=AUTH,
    )
    assert error_body(r, 400)["param"] == "ops"


@pytest.mark.parametrize(
    ("body", "status", "param"),
    [
        (b"", 400, "body"),
        (b"[1, 2]", 400, "body"),
        (b"{bad json", 400, "body"),
        (b"\x89PNG\r\n\x1a\n", 415, None),
    ],
)
def test_a_malformed_body_is_a_4xx(
    client: TestClient, body: bytes, status: int, param: str | None
) -> None:
    r = client.post("/v1/image/resize", content=body, headers=AUTH)
    assert error_body(r, status).get("param") == param


def test_an_unknown_top_level_field_is_named(client: TestClient) -> None:
    r = post(client, "resize", {"image": {"base64": B64}, "width": 10, "widht": 5})
    assert error_body(r, 400)["param"] == "widht"


def test_the_processing_api_needs_a_key(client: TestClient) -> None:
    r = client.post("/v1/image/resize", json={"image": {"base64": B64}, "width": 10})
    assert error_body(r, 401)["code"] == "unauthorized"


def test_the_vision_index_endpoints_are_501_not_404(client: TestClient) -> None:
    for path in ("tag",):
        assert error_body(post(client, path, {}), 501)["code"] == "not_available"


def test_the_photo_fixture_is_what_the_sizes_above_assume() -> None:
    image = pyvips.Image.new_from_file(str(Path(IMAGES / "photo.jpg")))
    assert (image.width, image.height) == (800, 600)


def test_a_result_swept_under_a_cached_lookup_is_rendered_again(client: TestClient) -> None:
    body = {"image": {"base64": B64}, "width": 77, "return": "base64"}
    first = post(client, "resize", body)
    result_id = post(client, "resize", {**body, "return": "url"}).json()["image_url"]
    result_id = result_id.split("/r/")[1].split(".")[0]
    storage = client.app.state.runtime.storage
    bytes_key = object_keys(result_id)[0]
    assert client.portal.call(storage.get_object, bytes_key) is not None
    client.portal.call(storage.delete_object, bytes_key)  # swept by another process
    again = post(client, "resize", body)
    assert again.status_code == 200 and again.headers["x-cache"] == "miss"
    assert again.json()["base64"] == first.json()["base64"]


def test_identical_requests_in_flight_together_render_once(live_server: str) -> None:
    body = {"image": {"base64": B64}, "ops": [{"op": "blur", "params": {"sigma": 7}}]}
    with httpx.Client(base_url=live_server, timeout=60) as http:
        before = http.get("/metrics").text

        def count(text: str) -> float:
            found = re.findall(r"^imgcdn_render_seconds_count\{[^}]*\} ([0-9.e+]+)$", text, re.M)
            return sum(float(v) for v in found)

        answers: list[httpx.Response] = []
        barrier = threading.Barrier(8)

        def one() -> None:
            barrier.wait()
            answers.append(http.post("/v1/image/process", json=body, headers=AUTH))

        threads = [threading.Thread(target=one) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
        assert [r.status_code for r in answers] == [200] * 8
        assert len({r.json()["image_url"] for r in answers}) == 1
        assert count(http.get("/metrics").text) - count(before) == 1


def test_every_absolute_url_an_answer_gives_starts_with_the_public_url(make_client: Any) -> None:
    client = make_client(public_url="https://img.example.com/base")
    upload(client, "p.jpg", "photo.jpg")
    urls = [
        post(client, "resize", {"image": {"id": "p.jpg"}, "width": 20}).json()["image_url"],
        post(client, "upload", {"file": B64}).json()["url"],
        client.get("/v1/image/get/p.jpg", headers=AUTH).json()["url"],
        post(client, "deliver_url", {"image_id": "p.jpg", "transform": {"width": 9}}).json()["url"],
        client.post("/v1/urls", json={"id": "p.jpg"}, headers=AUTH).json()["url"],
        client.get("/v1/assets/p.jpg", headers=AUTH).json()["url"],
    ]
    assert all(u.startswith("https://img.example.com/base/") for u in urls), urls
