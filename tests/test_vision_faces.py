"""Faces (SPEC §9) on real photos with hand-known boxes: detection, g=face, X-Faces,
blur_faces and the processing ops smart_crop target=face and face_blur."""

from __future__ import annotations

import base64
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import pyvips
from conftest import AUTH, IMAGES, decode, upload
from starlette.testclient import TestClient

from server.vision import faces, models

sys.path.insert(0, str(IMAGES / "vision"))
import make_group  # the group photo's known boxes come from how it was built

VISION = Path(IMAGES / "vision")
ASTRONAUT_FACE = make_group.ASTRONAUT_FACE
GROUP_FACES = make_group.boxes(make_group.GROUP)
CROWD_FACES = make_group.boxes(make_group.CROWD)

Rect = tuple[int, int, int, int]


def iou(a: Rect, b: Rect) -> float:
    ix = max(0, min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0]))
    iy = max(0, min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1]))
    inter = ix * iy
    return inter / (a[2] * a[3] + b[2] * b[3] - inter)


def rects(boxes: list[faces.Box]) -> list[Rect]:
    return [(b.x, b.y, b.width, b.height) for b in boxes]


def best_match(known: Rect, found: list[Rect]) -> float:
    return max((iou(known, f) for f in found), default=0.0)


def sharpness(image: pyvips.Image, box: Rect) -> float:
    """Variance of the Laplacian over `box`: how much fine detail it holds."""
    grey = image.crop(*box).colourspace("b-w").extract_band(0).cast("float")
    kernel = pyvips.Image.new_from_array([[0, 1, 0], [1, -4, 1], [0, 1, 0]])
    lap = grey.conv(kernel, precision="float").crop(1, 1, box[2] - 2, box[3] - 2)
    return float(np.asarray(lap.numpy()).var())


def test_the_astronauts_face_is_found_within_iou_half_of_the_hand_box() -> None:
    image = pyvips.Image.new_from_file(str(VISION / "astronaut.png"))
    found = rects(faces.detect(image))
    assert len(found) == 1
    assert iou(found[0], ASTRONAUT_FACE) >= 0.5


def test_every_face_of_the_group_photo_is_found_and_nothing_else() -> None:
    image = pyvips.Image.new_from_file(str(VISION / "group.jpg"))
    found = rects(faces.detect(image))
    assert len(found) == len(GROUP_FACES) == 7
    for known in GROUP_FACES:
        assert best_match(known, found) >= 0.5, known


def test_small_faces_at_the_back_of_a_crowd_are_found_for_blurring() -> None:
    # 40-62 px faces on a 1600 px photo (2.5-3.9 % of its long side): the 3x3 tiles' range.
    found = rects(faces.detect(pyvips.Image.new_from_file(str(VISION / "crowd.jpg"))))
    matched = [known for known in CROWD_FACES if best_match(known, found) >= 0.5]
    assert len(matched) >= 8
    assert all(known[2] < 44 for known in CROWD_FACES if known not in matched)
    assert len(found) == len(matched)  # and nothing that is not a face


def test_a_photo_without_people_has_no_faces() -> None:
    assert faces.detect(pyvips.Image.new_from_file(str(IMAGES / "photo.jpg"))) == []


@pytest.mark.parametrize("photo", ["vision/astronaut.png", "vision/group.jpg", "photo.jpg"])
def test_the_onnx_model_answers_as_the_tflite_it_was_converted_from(photo: str) -> None:
    # The .tflite run by OpenCV's dnn (how detection ran before the conversion) against the
    # .onnx run by onnxruntime, on the same real photo letterboxed to 192 px.
    cv2 = pytest.importorskip("cv2")
    image = pyvips.Image.thumbnail(str(IMAGES / photo), faces.SIZE)
    rgb = faces._array(faces._rgb(image), 1.0)
    scores, boxes = faces._detector().infer(rgb)
    canvas = np.zeros((faces.SIZE, faces.SIZE, 3), np.uint8)
    canvas[: rgb.shape[0], : rgb.shape[1]] = rgb
    net = cv2.dnn.readNetFromTFLite(str(models.path("face_detection_full_range.tflite")))
    net.setInput(cv2.dnn.blobFromImage(canvas, 1 / 127.5, size=(192, 192), mean=(127.5,) * 3))
    raw = sorted(net.forward(net.getUnconnectedOutLayersNames()), key=lambda a: a.shape[-1])
    assert np.abs(raw[0].reshape(-1) - scores).max() < 1e-3  # logits, range about -60..3
    assert np.abs(raw[1].reshape(-1, 16) - boxes).max() < 1e-2  # pixels at 192
    assert (scores > 0).any() == (photo != "photo.jpg")  # a face scores over 0.5 or none does


def test_boxes_are_cached_per_key_and_scale_to_any_size_of_the_same_image() -> None:
    image = pyvips.Image.new_from_file(str(VISION / "astronaut.png"))
    key = ("test", "astronaut-cache")
    first = faces.detect(image, key)
    # A solid grey image under the same key: the answer can only have come from the cache.
    grey = pyvips.Image.black(256, 256).new_from_image([128, 128, 128]).cast("uchar")
    again = rects(faces.detect(grey, key))
    doubled = [v * 2 for box in again for v in box]
    assert doubled == pytest.approx([v for box in rects(first) for v in box], abs=2)
    assert faces.detect(grey) == []


def test_the_model_is_loaded_once_and_only_when_asked() -> None:
    faces.detect(pyvips.Image.new_from_file(str(VISION / "astronaut.png")))
    assert "blazeface-full-range" in models.loaded()
    built: list[int] = []
    assert models.load("x-test", lambda: built.append(1) or "m") == "m"
    assert models.load("x-test", lambda: built.append(1) or "other") == "m"
    assert built == [1]


@pytest.fixture
def people(client: TestClient) -> TestClient:
    upload(client, "astronaut.png", "vision/astronaut.png")
    upload(client, "group.jpg", "vision/group.jpg")
    return client


def test_g_face_crops_around_the_face_and_says_how_many_in_x_faces(people: TestClient) -> None:
    # A wide strip of a square portrait: the centre crop would cut the face at the brow.
    r = people.get("/t/_/astronaut.png?w=512&h=120&g=face&fmt=png")
    assert r.status_code == 200, r.text
    assert r.headers["x-faces"] == "1"
    out = decode(r.content)
    assert (out.width, out.height) == (512, 120)
    source = pyvips.Image.new_from_file(str(VISION / "astronaut.png"))
    # The strip's rows are the source's rows top..top+120: find where it matches.
    _, y, _, h = ASTRONAUT_FACE
    tops = [
        t
        for t in range(0, 512 - 120 + 1)
        if abs(source.crop(0, t, 512, 120).avg() - out.avg()) < 0.5
        and (source.crop(0, t, 512, 120) - out).abs().max() < 30
    ]
    assert tops, "the strip is not an unscaled crop of the source"
    assert tops[0] <= y + h * 0.2 and tops[0] + 120 >= y + h * 0.8  # the face's middle is in


def test_g_face_with_no_face_falls_back_to_smart_and_says_zero(uploaded: TestClient) -> None:
    r = uploaded.get("/t/_/photo.jpg?w=200&h=200&g=face")
    smart = uploaded.get("/t/_/photo.jpg?w=200&h=200&g=smart")
    assert r.status_code == 200 and r.headers["x-faces"] == "0"
    assert (decode(r.content) - decode(smart.content)).abs().max() == 0


def test_x_faces_survives_the_variant_caches(people: TestClient) -> None:
    url = "/t/_/group.jpg?w=1600&h=400&g=face"
    first = people.get(url)
    again = people.get(url)
    assert first.headers["x-cache"] == "miss" and again.headers["x-cache"] != "miss"
    assert first.headers["x-faces"] == again.headers["x-faces"] != "0"


def test_a_url_without_faces_params_has_no_x_faces(people: TestClient) -> None:
    assert "x-faces" not in people.get("/t/_/astronaut.png?w=100&h=50").headers


def test_blur_faces_wipes_out_the_detail_of_every_face_in_the_group(people: TestClient) -> None:
    r = people.get("/t/_/group.jpg?blur_faces=4&fmt=png")
    assert r.status_code == 200 and r.headers["x-faces"] == "7"
    before = pyvips.Image.new_from_file(str(VISION / "group.jpg"))
    after = decode(r.content)
    for box in GROUP_FACES:
        assert sharpness(after, box) < 0.1 * sharpness(before, box), box
    # Away from the faces the photo is untouched.
    assert (after.crop(1500, 0, 100, 60) - before.crop(1500, 0, 100, 60)).abs().max() <= 2


def test_blur_faces_reaches_the_small_faces_of_a_crowd(people: TestClient) -> None:
    upload(people, "crowd.jpg", "vision/crowd.jpg")
    r = people.get("/t/_/crowd.jpg?blur_faces=2&fmt=png")
    assert r.status_code == 200 and int(r.headers["x-faces"]) >= 8
    before = pyvips.Image.new_from_file(str(VISION / "crowd.jpg"))
    after = decode(r.content)
    blurred = [b for b in CROWD_FACES if sharpness(after, b) < 0.1 * sharpness(before, b)]
    assert len(blurred) >= 8


def test_blur_faces_is_a_400_naming_it_when_out_of_range(people: TestClient) -> None:
    r = people.get("/t/_/group.jpg?blur_faces=0")
    assert r.status_code == 400 and r.json()["error"]["param"] == "blur_faces"


def post(client: TestClient, op: str, body: dict[str, Any]) -> Any:
    r = client.post(f"/v1/image/{op}", json=body, headers=AUTH)
    assert r.status_code == 200, r.text
    got = client.get(r.json()["image_url"])
    assert got.status_code == 200
    return decode(got.content)


def b64(name: str) -> str:
    return base64.b64encode((VISION / name).read_bytes()).decode()


def test_smart_crop_target_face_keeps_the_face(client: TestClient) -> None:
    body = {"image": {"base64": b64("astronaut.png")}, "aspect": "4:1", "target": "face"}
    out = post(client, "smart_crop", body)
    assert (out.width, out.height) == (512, 128)
    found = rects(faces.detect(out))
    assert len(found) == 1  # the face is in the strip, whole enough to be found again


def test_face_blur_op_blurs_the_faces(client: TestClient) -> None:
    out = post(client, "face_blur", {"image": {"base64": b64("group.jpg")}, "format": "png"})
    before = pyvips.Image.new_from_file(str(VISION / "group.jpg"))
    for box in GROUP_FACES:
        assert sharpness(out, box) < 0.1 * sharpness(before, box), box
    assert faces.detect(out) == [] or len(faces.detect(out)) < len(GROUP_FACES)


def test_blur_faces_on_an_animation_looks_at_every_frame(uploaded: TestClient) -> None:
    r = uploaded.get("/t/_/anim.gif?blur_faces=4")
    assert r.status_code == 200 and r.headers["x-faces"] == "0"
    assert decode(r.content).get("n-pages") == 6


def test_a_worker_that_serves_no_face_url_never_imports_onnxruntime_or_opencv(
    tmp_path: Path,
) -> None:
    # In a fresh interpreter: this test process has loaded the model already.
    script = f"""
import sys
from pathlib import Path
from starlette.testclient import TestClient
from server.app import create_app
from server.settings import Settings
from server.vision import models
settings = Settings(data_dir=Path({str(tmp_path)!r}), admin_tokens=({AUTH["Authorization"][7:]!r},))
with TestClient(create_app(settings)) as client:
    data = open({str(IMAGES / "photo.jpg")!r}, "rb").read()
    assert client.put("/v1/assets/p.jpg", content=data, headers={AUTH!r}).status_code in (200, 201)
    assert client.get("/t/_/p.jpg?w=200&h=200&g=smart").status_code == 200
print("onnxruntime" in sys.modules, "cv2" in sys.modules, sorted(models.loaded()))
"""
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=True
    )
    assert out.stdout.strip().splitlines()[-1] == "False False []"
