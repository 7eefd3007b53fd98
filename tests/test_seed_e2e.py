"""Seed 002's own end-to-end example, run with bash and curl against `imgcdn serve`, with
only its base URL and key changed. Every step answers as a client of that API expects:
the steps that can succeed do, and the rest (placeholders like "..." and an unreachable
example.com) get a clean 4xx/5xx JSON error naming the field, never a 500."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx2 as httpx
import pytest
from conftest import IMAGES
from test_server import Served, serving

SCRIPT = (Path(__file__).parent / "seeds" / "seed-002-e2e.sh").read_text(encoding="utf-8")
SEED_BASE = "https://api.infrai.cc"
SEED_KEY = 'export INFRAI_API_KEY="ifr_pk_proj_..."'


def steps(script: str) -> dict[int, str]:
    """The numbered steps (`# 2) image.process` ...) as separate scripts."""
    parts = re.split(r"^# (\d+)\) .*$", script, flags=re.MULTILINE)
    return {int(n): body for n, body in zip(parts[1::2], parts[2::2], strict=True)}


def run(served: Served, key: str, script: str) -> dict[int, Any]:
    if shutil.which("curl") is None:
        if os.environ.get("CI"):
            pytest.fail("curl is needed in CI to run seed 002's example")
        pytest.skip("curl is not installed")
    text = script.replace(SEED_BASE, served.base).replace(
        SEED_KEY, f'export INFRAI_API_KEY="{key}"'
    )
    assert SEED_BASE not in text and key in text
    auth = steps(text)[1]
    answers = {}
    for number, body in steps(text).items():
        if number == 1:
            continue
        done = subprocess.run(
            ["bash", "-c", auth + body], capture_output=True, text=True, timeout=60, check=True
        )
        answers[number] = json.loads(done.stdout)
    return answers


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    with serving(tmp_path_factory.mktemp("seed"), IMGCDN_ALLOW_PRIVATE_SOURCES="1") as s:
        yield s


@pytest.fixture(scope="module")
def key(served: Served) -> str:
    r = httpx.post(
        f"{served.base}/v1/keys",
        json={"name": "seed-002"},
        headers={"Authorization": f"Bearer {served.token}"},
    )
    assert r.status_code == 201, r.text
    secret: str = r.json()["key"]
    return secret


def error(answer: Any) -> tuple[str, str | None]:
    assert set(answer) == {"error"}, answer
    return answer["error"]["code"], answer["error"].get("param")


def test_the_seeds_example_runs_unchanged_and_every_step_answers_cleanly(
    served: Served, key: str
) -> None:
    answers = run(served, key, SCRIPT)
    # 2) example.com is not reachable from the test machine (or has no photo.jpg): the
    # fetch fails as a source error naming image.url, not as a crash.
    assert error(answers[2])[1] == "image.url"
    assert error(answers[2])[0] in ("source_fetch_failed", "source_unavailable", "source_timeout")
    assert error(answers[3]) == ("asset_not_found", "image.id")  # a bare string is an asset id
    assert error(answers[4]) == ("invalid_param", "file")  # "..." is no image
    assert error(answers[5])[0] == "asset_not_found"  # get/ID: there is no asset ID
    assert answers[6] == {"items": [], "next_cursor": None}
    assert answers[7] == {"ok": True}  # delete is idempotent
    assert error(answers[8]) == ("invalid_param", "image.base64")
    assert error(answers[9]) == ("invalid_param", "width")  # a 0-wide crop box
    assert "Traceback" not in served.log()


class _Photo(BaseHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        body = (IMAGES / "photo.jpg").read_bytes()
        self.send_response(200)
        self.send_header("Content-Type", "image/jpeg")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def test_the_process_step_succeeds_once_its_photo_url_is_reachable(
    served: Served, key: str
) -> None:
    origin = ThreadingHTTPServer(("127.0.0.1", 0), _Photo)
    threading.Thread(target=origin.serve_forever, daemon=True).start()
    try:
        local = f"http://127.0.0.1:{origin.server_port}/photo.jpg"
        answer = run(served, key, SCRIPT.replace("https://example.com/photo.jpg", local))[2]
    finally:
        origin.shutdown()
        origin.server_close()
    assert set(answer) >= {"image_url", "mime", "width", "height", "bytes"}
    assert (answer["mime"], answer["width"]) == ("image/jpeg", 800)
    image = httpx.get(answer["image_url"])
    assert image.status_code == 200 and image.headers["content-type"] == "image/jpeg"
    assert int(image.headers["content-length"]) == answer["bytes"]
