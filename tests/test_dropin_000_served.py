"""Seed 000's own example request, replayed unchanged (apart from the base URL and the key)
against a real `imgcdn serve` process; and its pipeline and error envelope over the wire."""

from __future__ import annotations

import re

import httpx2 as httpx
from conftest import IMAGES, decode
from test_server import serving

PHOTO = (IMAGES / "photo.jpg").read_bytes()  # 800 x 600


def test_the_seeds_example_request_works_against_imgcdn_serve(tmp_path):
    with serving(tmp_path) as served, httpx.Client(base_url=served.base, timeout=60) as http:
        key = served.new_key("seed000")
        # The seed: POST /api/v1/image-processing/resize?api_key=YOUR_API_KEY, multipart,
        # image=<binary-file-data>, width=800, height=600.
        r = http.post(
            f"/api/v1/image-processing/resize?api_key={key}",
            files={"image": ("photo.jpg", PHOTO, "image/jpeg")},
            data={"width": "800", "height": "600"},
        )
        assert r.status_code == 200, r.text
        assert r.headers["content-type"] == "image/jpeg"
        assert int(r.headers["content-length"]) == len(r.content)
        assert re.fullmatch(r"[0-9]+ms", r.headers["x-processing-time"])
        assert re.fullmatch(r"[0-9a-f]{32}", r.headers["x-correlation-id"])
        image = decode(r.content)
        assert (image.width, image.height, image.bands) == (800, 600, 3)
        assert abs(image.avg() - decode(PHOTO).avg()) < 3  # the same picture, re-encoded

        piped = http.post(
            f"/image-processing?api_key={key}",
            json={
                "image_url": "http://127.0.0.1:9/a.jpg",  # refused before any fetch: SSRF
                "operations": [{"operation": "resize", "width": 100}],
            },
            headers={"Content-Type": "application/json", "X-Correlation-ID": "c-1"},
        )
        assert piped.status_code == 403, piped.text
        body = piped.json()
        assert body["success"] is False and body["error"] == "source_forbidden"
        assert body["correlationId"] == "c-1" == piped.headers["x-correlation-id"]

        wrong = http.post(
            "/api/v1/image-processing/resize?api_key=not-a-key",
            files={"image": ("photo.jpg", PHOTO, "image/jpeg")},
            data={"width": "800"},
        )
        assert wrong.status_code == 401 and wrong.json()["error"] == "unauthorized"
        assert "not-a-key" not in served.log()  # a key is never logged
