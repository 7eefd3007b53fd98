"""Seed 003 (SPEC §10): /api/tasks/visual/correction over the real app, on real photos with
known answers: a rendered page warped onto tests/images/photo.jpg (known corners), and
tests/images/vision/product.jpg with its known mask."""

from __future__ import annotations

import base64
import time
from typing import Any

import cv2
import numpy as np
import pytest
import pyvips
from conftest import IMAGES, TOKEN, decode, wait_until
from documents import jpeg, page_on_photo
from starlette.testclient import TestClient

from server.routes import correction_tasks

PATH = "/api/tasks/visual/correction"
KEY = {"X-API-KEY": TOKEN}
VISION = IMAGES / "vision"


def post(client: TestClient, data: bytes | None, **fields: Any) -> Any:
    files = {"image_file": ("in.jpg", data, "image/jpeg")} if data is not None else None
    form = {k: str(v) for k, v in fields.items()}
    return client.post(PATH, data=form, files=files, headers=KEY)


def image_of(answer: dict[str, Any]) -> pyvips.Image:
    return decode(base64.b64decode(answer["data"]["image"]))


@pytest.mark.parametrize("turn", [None, cv2.ROTATE_90_CLOCKWISE])
def test_type_0_returns_the_page_cropped_and_upright_within_2_percent(
    client: TestClient, turn: int | None
) -> None:
    photo, known = page_on_photo()
    sent = photo if turn is None else np.ascontiguousarray(cv2.rotate(photo, turn))
    r = post(client, jpeg(sent), sync=1, type=0, return_type=2)
    assert r.status_code == 200, r.text
    answer = r.json()
    assert answer["status"] == 200 and answer["data"]["state"] == 1
    assert answer["data"]["progress"] == 100
    page = image_of(answer)
    # The quad's longer opposite sides, as the flattened page has them; upright: not turned.
    width = max(np.linalg.norm(known[1] - known[0]), np.linalg.norm(known[2] - known[3]))
    height = max(np.linalg.norm(known[3] - known[0]), np.linalg.norm(known[2] - known[1]))
    assert abs(page.width - width) <= 0.02 * width
    assert abs(page.height - height) <= 0.02 * height


def test_type_2_gives_a_grey_page_with_white_paper_and_black_ink(client: TestClient) -> None:
    photo, _ = page_on_photo()
    r = post(client, jpeg(photo), sync=1, type=2, return_type=2)
    assert r.status_code == 200, r.text
    page = image_of(r.json()).numpy()
    assert page.ndim == 2 or page.shape[2] == 1
    assert np.median(page) > 230 and np.percentile(page, 1) < 60


def test_type_4_cuts_the_product_out_within_iou_0_8_of_its_mask(client: TestClient) -> None:
    data = (VISION / "product.jpg").read_bytes()
    r = post(client, data, sync=1, type=4, return_type=3)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "image/png"
    cut = decode(r.content)
    assert cut.bands == 4
    known = pyvips.Image.new_from_file(str(VISION / "product-mask.png")).numpy() > 127
    ys, xs = np.nonzero(known)
    box = known[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1]
    # The crop is the product's box plus a 2 % margin: within 5 % of the known box.
    assert abs(cut.width - box.shape[1]) <= 0.05 * box.shape[1]
    assert abs(cut.height - box.shape[0]) <= 0.05 * box.shape[0]
    alpha = cut.extract_band(3).resize(box.shape[1] / cut.width, vscale=box.shape[0] / cut.height)
    found = alpha.numpy()[: box.shape[0], : box.shape[1]] > 127
    found = np.pad(found, ((0, box.shape[0] - found.shape[0]), (0, box.shape[1] - found.shape[1])))
    assert float((found & box).sum() / (found | box).sum()) >= 0.8


def test_an_async_task_is_polled_until_done_and_gives_a_url_valid_for_an_hour(
    client: TestClient,
) -> None:
    data = (VISION / "product.jpg").read_bytes()
    r = post(client, data, sync=0, type=3)
    assert r.status_code == 200, r.text
    task_id = r.json()["data"]["task_id"]
    seen: list[dict[str, Any]] = []

    def done() -> bool:
        seen.append(client.get(f"{PATH}/{task_id}", headers=KEY).json())
        return bool(seen[-1]["data"]["state"] != 4)

    wait_until(done, 60)
    data_ = seen[-1]["data"]
    assert data_["state"] == 1 and data_["progress"] == 100, seen[-1]
    assert int(data_["created_at"]) <= int(data_["completed_at"]) <= time.time() + 1
    url = data_["image"]
    exp = int(url.split("exp=")[1].split("&")[0])
    assert 3500 < exp - time.time() <= 3600
    got = client.get(url.split("testserver", 1)[1])
    assert got.status_code == 200 and got.headers["content-type"] == "image/jpeg"


def test_a_task_of_another_or_no_id_is_a_404_in_the_envelope(client: TestClient) -> None:
    r = client.get(f"{PATH}/nope", headers=KEY)
    assert r.status_code == 404
    assert r.json()["data"]["code"] == "task_not_found" and r.json()["status"] == 404


@pytest.mark.parametrize(
    ("fields", "headers", "status", "code", "param"),
    [
        ({"type": 1}, {}, 401, "unauthorized", None),
        ({"type": 7}, KEY, 400, "invalid_param", "type"),
        ({"sync": 0, "return_type": 3}, KEY, 400, "invalid_param", "return_type"),
        ({"type": "x"}, KEY, 400, "invalid_param", "type"),
    ],
)
def test_bad_input_is_answered_in_the_seeds_envelope(
    client: TestClient,
    fields: dict[str, Any],
    headers: dict[str, str],
    status: int,
    code: str,
    param: str | None,
) -> None:
    data = (IMAGES / "photo.jpg").read_bytes()
    r = client.post(
        PATH,
        data={k: str(v) for k, v in fields.items()},
        files={"image_file": ("a.jpg", data, "image/jpeg")},
        headers=headers,
    )
    assert r.status_code == status, r.text
    body = r.json()
    assert body["status"] == status and body["data"]["code"] == code
    assert body["data"].get("param") == param and body["message"]


def test_no_image_is_a_400_naming_image_file(client: TestClient) -> None:
    r = client.post(PATH, data={"type": "0"}, files={"x": ("", b"", "")}, headers=KEY)
    assert r.status_code == 400
    r = client.post(PATH, json={"type": 0}, headers=KEY)
    assert r.status_code == 400 and r.json()["data"]["param"] == "image_file"


def test_an_image_over_4096_pixels_a_side_is_a_413_before_decoding(client: TestClient) -> None:
    big = pyvips.Image.black(4097, 8).write_to_buffer(".png")
    r = post(client, big, sync=1, type=0)
    assert r.status_code == 413
    assert r.json()["data"] == {
        "code": "source_too_large",
        "message": "image_file is 4097x8, the limit is 4096x4096",
        "param": "image_file",
    }


def test_a_tasks_files_are_swept_once_its_hour_is_over(client: TestClient) -> None:
    r = post(client, (VISION / "product.jpg").read_bytes(), sync=0, type=3)
    task_id = r.json()["data"]["task_id"]
    wait_until(lambda: client.get(f"{PATH}/{task_id}", headers=KEY).json()["data"]["state"] == 1)
    rt = client.app.state.runtime  # type: ignore[attr-defined]
    files = rt.settings.data_dir / "objects" / "seed003"
    assert [p.name for p in files.rglob("*") if p.is_file()] == [f"{task_id}.json"]

    def sweep(at: float) -> int:
        return client.portal.call(correction_tasks.sweep, rt, at, 100)  # type: ignore[union-attr]

    assert sweep(time.time() + 60) == 0  # within its hour: kept
    later = time.time() + rt.settings.result_ttl_s + correction_tasks.SWEEP_MARGIN_S + 1
    assert sweep(later) == 1
    assert not [p for p in files.rglob("*") if p.is_file()]
    assert client.get(f"{PATH}/{task_id}", headers=KEY).status_code == 404
