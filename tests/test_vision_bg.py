"""Background removal and moderation (SPEC §9) over the real app, on real photos with
known masks (tests/images/vision/, made by make_bg.py; SOURCES.md): IoU >= 0.8 with the
known mask, alpha where the format has it, the background colour where it has not."""

from __future__ import annotations

import base64
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
import pyvips
from conftest import AUTH, IMAGES, decode, error_body, upload
from onnx import TensorProto, helper, numpy_helper
from starlette.testclient import TestClient

from server.settings import Settings, SettingsError
from server.vision import background

VISION = IMAGES / "vision"


def b64(name: str) -> str:
    return base64.b64encode((VISION / name).read_bytes()).decode()


def cut_out(client: TestClient, name: str, **params: Any) -> pyvips.Image:
    body = {"image": {"base64": b64(name)}, "return": "base64", **params}
    r = client.post("/v1/image/background_remove", json=body, headers=AUTH)
    assert r.status_code == 200, r.text
    return decode(base64.b64decode(r.json()["base64"]))


def truth(name: str) -> np.ndarray:
    return pyvips.Image.new_from_file(str(VISION / f"{name}-mask.png")).numpy() > 127


def iou(alpha: pyvips.Image, known: np.ndarray) -> float:
    found = alpha.numpy() > 127
    assert found.shape == known.shape
    return float((found & known).sum() / (found | known).sum())


@pytest.mark.parametrize(("name", "method"), [("product", "classical"), ("person", "segmentation")])
def test_the_subject_comes_out_within_iou_0_8_of_its_known_mask(
    client: TestClient, name: str, method: str
) -> None:
    image = cut_out(client, f"{name}.jpg", format="png")
    assert image.bands == 4
    assert iou(image.extract_band(3), truth(name)) >= 0.8
    rgb = pyvips.Image.new_from_file(str(VISION / f"{name}.jpg")).numpy()
    assert background.choose(rgb, None) == method  # plain border: classical; else people


def test_jpeg_has_no_alpha_so_the_subject_sits_on_the_background_colour(
    client: TestClient,
) -> None:
    green = cut_out(client, "product.jpg", format="jpeg", background="00ff00")
    white = cut_out(client, "product.jpg", format="jpeg")
    assert green.bands == white.bands == 3
    corner = (5, 5)  # background in the photo
    assert all(abs(a - b) < 12 for a, b in zip(green.getpoint(*corner), (0, 255, 0), strict=True))
    assert min(white.getpoint(*corner)) > 243
    # the subject itself is untouched: the red bowl is red whatever the background
    bowl = (320, 300)
    assert all(
        abs(a - b) < 12 for a, b in zip(green.getpoint(*bowl), white.getpoint(*bowl), strict=True)
    )


def test_webp_keeps_the_alpha_and_ignores_the_background_colour(client: TestClient) -> None:
    image = cut_out(client, "person.jpg", format="webp", background="00ff00")
    assert image.bands == 4 and image.getpoint(5, 5)[3] == 0


def test_background_remove_is_a_process_step_like_any_other(client: TestClient) -> None:
    ops = [
        {"op": "resize", "params": {"width": 256}},
        {"op": "background_remove"},
        {"op": "convert", "params": {"format": "png"}},
    ]
    body = {"image": {"base64": b64("person.jpg")}, "ops": ops, "return": "base64"}
    r = client.post("/v1/image/process", json=body, headers=AUTH)
    assert r.status_code == 200, r.text
    image = decode(base64.b64decode(r.json()["base64"]))
    known = truth("person")[::2, ::2]
    assert (image.width, image.bands) == (256, 4)
    assert iou(image.extract_band(3), known) >= 0.8


def test_a_bad_background_colour_is_a_400_naming_it(client: TestClient) -> None:
    body = {"image": {"base64": b64("person.jpg")}, "background": "green"}
    r = client.post("/v1/image/background_remove", json=body, headers=AUTH)
    assert error_body(r, 400)["param"] == "background"


def test_delivery_bg_remove_gives_alpha_in_png_and_white_in_jpeg(client: TestClient) -> None:
    upload(client, "person.jpg", "vision/person.jpg")
    png = decode(client.get("/t/_/person.jpg?bg_remove=1&fmt=png").content)
    assert png.bands == 4 and iou(png.extract_band(3), truth("person")) >= 0.8
    jpeg = decode(client.get("/t/_/person.jpg?w=256&bg_remove=1&fmt=jpg").content)
    assert jpeg.bands == 3 and min(jpeg.getpoint(3, 3)) > 243
    plain = decode(client.get("/t/_/person.jpg?w=256&fmt=jpg").content)
    assert max(plain.getpoint(3, 3)) < 230  # without bg_remove the leaves are still there
    green = decode(client.get("/t/_/person.jpg?w=256&bg_remove=1&bg=00ff00&fmt=jpg").content)
    assert green.getpoint(3, 3)[1] > 230 and green.getpoint(3, 3)[0] < 30


def test_delivery_bg_remove_takes_only_0_or_1(client: TestClient) -> None:
    upload(client, "person.jpg", "vision/person.jpg")
    r = client.get("/t/_/person.jpg?bg_remove=yes")
    assert error_body(r, 400)["param"] == "bg_remove"


def test_a_delivery_without_bg_remove_loads_no_vision_code() -> None:
    script = f"""
import sys, tempfile
from pathlib import Path
sys.path.insert(0, {str(Path(__file__).parent)!r})
from conftest import AUTH, IMAGES, TOKEN
from starlette.testclient import TestClient
from server.app import create_app
from server.settings import Settings
with tempfile.TemporaryDirectory() as d:
    app = create_app(Settings(data_dir=Path(d), admin_tokens=(TOKEN,), render_threads=1))
    with TestClient(app) as c:
        c.put("/v1/assets/p.jpg", content=(IMAGES / "photo.jpg").read_bytes(), headers=AUTH)
        assert c.get("/t/_/p.jpg?w=100").status_code == 200
        print("cv2" in sys.modules, "server.vision.background" in sys.modules)
"""
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["False", "False"]


def left_half_model(path: Path, side: int = 320) -> None:
    """A matting model with rembg's layout (1x3xSxS in, 1x1xSxS out) that ignores its
    input and answers "subject" on the left half: which method ran shows in the alpha."""
    half = np.zeros((1, 1, side, side), np.float32)
    half[..., : side // 2] = 1.0
    nodes = [
        helper.make_node("ReduceMean", ["input"], ["mean"], axes=[1], keepdims=1),
        helper.make_node("Mul", ["mean", "zero"], ["nothing"]),
        helper.make_node("Add", ["nothing", "half"], ["mask"]),
    ]
    graph = helper.make_graph(
        nodes,
        "left_half",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, side, side])],
        [helper.make_tensor_value_info("mask", TensorProto.FLOAT, [1, 1, side, side])],
        [
            numpy_helper.from_array(np.zeros(1, np.float32), "zero"),
            numpy_helper.from_array(half, "half"),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))


def test_an_operators_onnx_model_replaces_the_built_in_methods(
    make_client: Any, tmp_path: Path
) -> None:
    model = tmp_path / "left.onnx"
    left_half_model(model)
    client = make_client(bg_model=str(Settings.load({"IMGCDN_BG_MODEL": str(model)}).bg_model))
    alpha = cut_out(client, "product.jpg", format="png").extract_band(3).numpy()
    w = alpha.shape[1]
    assert alpha[:, : w // 2 - 4].min() > 250 and alpha[:, w // 2 + 4 :].max() < 5


def test_IMGCDN_BG_MODEL_must_name_an_existing_onnx_file(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="IMGCDN_BG_MODEL"):
        Settings.load({"IMGCDN_BG_MODEL": str(tmp_path / "missing.onnx")})


# -- moderation and tagging ------------------------------------------------------------------


@pytest.mark.parametrize("name", ["vision/person.jpg", "photo.jpg", "alpha.png", "orient6.heic"])
def test_safe_photos_score_low_and_are_not_flagged(client: TestClient, name: str) -> None:
    data = base64.b64encode((IMAGES / name).read_bytes()).decode()
    r = client.post("/v1/image/moderate", json={"image": {"base64": data}}, headers=AUTH)
    assert r.status_code == 200, r.text
    answer = r.json()
    assert set(answer) == {"flagged", "categories"} and answer["flagged"] is False
    assert 0 <= answer["categories"]["nsfw"] < 0.2  # Yahoo's "safe" band


def test_moderate_without_an_image_is_a_400_naming_image(client: TestClient) -> None:
    r = client.post("/v1/image/moderate", json={}, headers=AUTH)
    assert error_body(r, 400)["param"] == "image"


def test_moderate_on_bytes_that_are_no_image_is_a_4xx(client: TestClient) -> None:
    data = base64.b64encode(b"not an image at all").decode()
    r = client.post("/v1/image/moderate", json={"image": {"base64": data}}, headers=AUTH)
    assert 400 <= r.status_code < 500 and r.json()["error"]["code"]


def test_moderate_needs_a_key(client: TestClient) -> None:
    r = client.post("/v1/image/moderate", json={"image": {"base64": b64("person.jpg")}})
    assert error_body(r, 401)["code"] == "unauthorized"


def test_tag_is_501_saying_why(client: TestClient) -> None:
    body = error_body(client.post("/v1/image/tag", json={}, headers=AUTH), 501)
    assert body["code"] == "not_available" and "tagging model" in body["message"]


def test_render_threads_segmenting_at_once_each_get_their_own_mask() -> None:
    # One OpenCV Net per process holds its input between setInput and forward: without
    # the lock, 4 threads got each other's masks in almost every round.
    from concurrent.futures import ThreadPoolExecutor

    names = ["vision/person.jpg", "vision/product.jpg", "photo.jpg", "p3.jpg"]
    rgbs = [pyvips.Image.thumbnail(str(IMAGES / n), 256).numpy()[:, :, :3].copy() for n in names]
    alone = [background.segment_people(rgb) for rgb in rgbs]
    with ThreadPoolExecutor(4) as pool:
        for _ in range(20):
            together = list(pool.map(background.segment_people, rgbs))
            for mine, theirs in zip(together, alone, strict=True):
                assert np.allclose(mine, theirs, atol=1e-3)


def test_a_cut_out_is_png_unless_a_format_is_named(client: TestClient) -> None:
    body = {"image": {"base64": b64("product.jpg")}, "return": "base64"}
    r = client.post("/v1/image/background_remove", json=body, headers=AUTH)
    assert r.status_code == 200, r.text
    assert (r.json()["format"], decode(base64.b64decode(r.json()["base64"])).bands) == ("png", 4)
    ops = [{"op": "convert", "params": {"format": "webp"}}, {"op": "background_remove"}]
    r = client.post("/v1/image/process", json={**body, "ops": ops}, headers=AUTH)
    assert r.json()["format"] == "webp"
