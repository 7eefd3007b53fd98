"""Seed 003 over a real `imgcdn serve`: image_url input from a local origin (sync and async),
a task that fails when run (state -1, HTTP 200, the message says why, nothing half-written),
a Redis killed before a submit (503 + Retry-After in the envelope; /t/ still serves), and
SIGKILL of every serving process mid-task then a restart on the same data dir (every task
completes, none lost)."""

from __future__ import annotations

import contextlib
import os
import signal
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import httpx2 as httpx
import pyvips
from conftest import IMAGES, free_port, http_origin, wait_until
from redisproc import RedisProcess
from test_jobs_embedded_kill import serve, up
from test_server import serving

from server.routes.correction import PATH

PRODUCT = (IMAGES / "vision" / "product.jpg").read_bytes()


class _Origin(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "image/jpeg")
        self.send_header("Content-Length", str(len(PRODUCT)))
        self.end_headers()
        self.wfile.write(PRODUCT)

    def log_message(self, *args: Any) -> None:
        pass


def origin() -> contextlib.AbstractContextManager[str]:
    return http_origin(_Origin, "/product.jpg")


def key_of(data_dir: Path) -> dict[str, str]:
    return {"X-API-KEY": (data_dir / "admin-token").read_text().strip()}


def submit(base: str, key: dict[str, str], data: bytes, **fields: Any) -> httpx.Response:
    form = {k: str(v) for k, v in fields.items()}
    files = {"image_file": ("in.jpg", data, "image/jpeg")}
    return httpx.post(base + PATH, data=form, files=files, headers=key, timeout=60)


def task_of(base: str, key: dict[str, str], task_id: str) -> dict[str, Any]:
    r = httpx.get(f"{base}{PATH}/{task_id}", headers=key, timeout=30)
    assert r.status_code == 200, r.text
    return dict(r.json())


def settled(base: str, key: dict[str, str], task_id: str, seconds: float) -> dict[str, Any]:
    seen: dict[str, Any] = {}

    def done() -> bool:
        seen.update(task_of(base, key, task_id))
        return bool(seen["data"]["state"] < 2)

    wait_until(done, seconds)
    return seen


def test_an_image_url_from_a_local_origin_works_sync_and_async(tmp_path: Path) -> None:
    with (
        origin() as url,
        serving(tmp_path, IMGCDN_ALLOW_PRIVATE_SOURCES="1") as served,
    ):
        key = key_of(served.data_dir)
        body = {"image_url": url, "type": 3}
        sync = httpx.post(served.base + PATH, json={**body, "sync": 1}, headers=key, timeout=60)
        assert sync.status_code == 200, sync.text
        r = httpx.post(served.base + PATH, json={**body, "sync": 0}, headers=key, timeout=60)
        assert r.status_code == 200, r.text
        task = settled(served.base, key, r.json()["data"]["task_id"], 60)["data"]
        assert task["state"] == 1 and task["progress"] == 100
        # The same input and type: the same stored result (the result id is their hash).
        assert task["image"].split("?")[0] == sync.json()["data"]["image"].split("?")[0]
        image = httpx.get(task["image"], timeout=30)
        assert image.status_code == 200 and image.headers["content-type"] == "image/jpeg"
        assert pyvips.Image.new_from_buffer(image.content, "").width <= 640


def test_a_task_failing_when_run_is_state_minus_1_with_why_and_nothing_half_written(
    tmp_path: Path,
) -> None:
    # A JPEG cut short: its header passes the submit's checks; its pixels cannot be decoded.
    truncated = PRODUCT[: len(PRODUCT) // 3]
    with serving(tmp_path) as served:
        key = key_of(served.data_dir)
        r = submit(served.base, key, truncated, sync=0, type=3)
        assert r.status_code == 200, r.text
        answer = settled(served.base, key, r.json()["data"]["task_id"], 60)
        stored = sorted(p.name for p in served.data_dir.rglob("seed003/*"))
        results = list(served.data_dir.rglob("results/*/*"))
    assert answer["status"] == 200 and answer["data"]["state"] == -1
    assert "cannot be processed" in answer["message"], answer
    assert answer["data"]["image"] == "" and answer["data"]["completed_at"]
    assert stored == [f"{r.json()['data']['task_id']}.json"]  # its input is gone, no result
    assert results == []


def test_a_redis_down_at_submit_is_a_503_in_the_envelope_and_delivery_still_serves(
    tmp_path: Path,
) -> None:
    redis = RedisProcess(tmp_path)
    redis.start()
    try:
        with serving(tmp_path, IMGCDN_REDIS_URL=redis.url) as served:
            key = key_of(served.data_dir)
            photo = (IMAGES / "photo.jpg").read_bytes()
            admin = {"Authorization": f"Bearer {key['X-API-KEY']}"}
            put = httpx.put(f"{served.base}/v1/assets/photo.jpg", content=photo, headers=admin)
            assert put.status_code == 201, put.text
            redis.kill()
            r = submit(served.base, key, PRODUCT, sync=0, type=3)
            delivered = httpx.get(f"{served.base}/t/_/photo.jpg?w=64", timeout=30)
            stored = list(served.data_dir.rglob("seed003/*"))
    finally:
        redis.stop()
    assert r.status_code == 503, r.text
    assert int(r.headers["retry-after"]) >= 1
    assert r.json()["status"] == 503 and r.json()["data"]["code"] == "state_unavailable"
    assert stored == []  # no task without its queue message
    assert delivered.status_code == 200
    assert pyvips.Image.new_from_buffer(delivered.content, "").width == 64


def test_tasks_survive_sigkill_of_every_serving_process_and_a_restart(tmp_path: Path) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    # 12 MP products with distinct bytes: each task a render of about a second (bench).
    big = pyvips.Image.new_from_buffer(PRODUCT, "").resize(6.25)
    inputs = [big.write_to_buffer(f".jpg[Q={80 + i}]") for i in range(4)]
    with serve(tmp_path, port, "first.log") as first:
        wait_until(lambda: up(base), 30)
        key = key_of(tmp_path / "data")
        ids = []
        for data in inputs:
            r = submit(base, key, data, sync=0, type=4)
            assert r.status_code == 200, r.text
            ids.append(r.json()["data"]["task_id"])
        wait_until(lambda: task_of(base, key, ids[0])["data"]["state"] == 1, 60)
        os.killpg(first.pid, signal.SIGKILL)
        first.wait(timeout=10)
    # Inputs of tasks not yet done at the kill (one of them mid-render, with 2 job slots).
    pending = [i for i in ids if (tmp_path / "data" / "objects" / "seed003" / f"{i}.src").exists()]
    assert pending, "every task ended before the kill: make them slower"
    with serve(tmp_path, port, "second.log"):
        wait_until(lambda: up(base), 30)
        final = [settled(base, key, task_id, 120)["data"] for task_id in ids]
        images = [httpx.get(task["image"], timeout=30) for task in final]
    assert [task["state"] for task in final] == [1] * len(ids), final
    assert all(r.status_code == 200 and r.headers["content-type"] == "image/png" for r in images)
    assert "Traceback" not in (tmp_path / "second.log").read_text()
    assert not list((tmp_path / "data").rglob("seed003/*.src"))  # every input consumed


def test_an_async_submit_checks_the_image_as_a_sync_one_does(tmp_path: Path) -> None:
    wide = pyvips.Image.black(5000, 40).write_to_buffer(".png")  # over the seed's 4096
    with serving(tmp_path) as served:
        key = key_of(served.data_dir)
        too_wide = submit(served.base, key, wide, sync=0, type=3)
        not_an_image = submit(served.base, key, b"print('hello')\n" * 20, sync=0, type=3)
        stored = list(served.data_dir.rglob("seed003/*"))
    assert too_wide.status_code == too_wide.json()["status"] == 413
    assert too_wide.json()["data"] == {
        "code": "source_too_large",
        "message": "image_file is 5000x40, the limit is 4096x4096",
        "param": "image_file",
    }
    assert not_an_image.status_code == 415
    assert not_an_image.json()["data"]["code"] == "unsupported_format"
    assert stored == []  # no task, no input kept
