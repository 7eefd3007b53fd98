"""The drop-in endpoints of SPEC §10 and /playground through the real nginx: the repo's
nginx.conf and the k8s edge config, each in front of a real imgcdn (as
test_nginx_processing.py runs them).

Each seed's request answers through nginx as it does direct; what nginx refuses itself on a
seed's path (a body over the seed's limit, a wrong method, imgcdn down, a raw URI that is not
the path) is in that seed's envelope with imgcdn's code inside, and never reaches imgcdn.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import httpx2 as httpx
import pytest
from conftest import IMAGES, decode, free_port, loader
from test_nginx import find_nginx, running_nginx, upstream  # noqa: F401
from test_nginx_hostile import Answer, Front, edge_config, exchange, k8s_front, repo_front  # noqa: F401
from test_nginx_processing import api_key, base, front  # noqa: F401

PHOTO = (IMAGES / "photo.jpg").read_bytes()  # 800 x 600
CORRECTION = "/api/tasks/visual/correction"
COMPRESS = "/api/v1/compress"
CROPPING = "/api/image/editing/image-cropping"
SINGLE = "/api/v1/image-processing/resize"
PIPELINE = "/image-processing"
MiB = 1024 * 1024
# Each drop-in path's body limit at nginx (client_max_body_size).
LIMITS = {
    CORRECTION: 28 * MiB,
    COMPRESS: 14 * MiB,
    CROPPING: 4 * MiB,
    SINGLE: 68 * MiB,
    PIPELINE: 68 * MiB,
}


def envelope(path: str, answer: Answer | httpx.Response) -> tuple[int, str, str]:
    """(the envelope's status, imgcdn's code, the message) of an error in `path`'s seed's
    envelope, checking the envelope's shape."""
    raw = answer.content if isinstance(answer, httpx.Response) else answer.body
    body: dict[str, Any] = json.loads(raw)
    if path == CORRECTION or path.startswith(CORRECTION + "/"):
        assert set(body) == {"status", "message", "data"}, body
        assert body["data"]["message"] == body["message"]
        return body["status"], body["data"]["code"], body["message"]
    if path == COMPRESS:
        assert {"code", "message", "error"} <= set(body) <= {"code", "message", "error", "param"}
        return body["code"], body["error"], body["message"]
    if path == CROPPING:
        detail = body["error_detail"]
        assert body["request_id"] == body["log_id"] and body["request_id"]
        assert detail["status_code"] == body["error_code"]
        assert detail["message"] == detail["code_message"] == body["error_msg"]
        return body["error_code"], detail["code"], body["error_msg"]
    assert body["success"] is False and body["correlationId"], body
    assert re.match(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d", body["timestamp"]), body
    return _status_of(answer), body["error"], body["details"]


def _status_of(answer: Answer | httpx.Response) -> int:
    return answer.status_code if isinstance(answer, httpx.Response) else answer.status


def key_for(path: str, key: str) -> tuple[str, dict[str, str]]:
    """The query and headers each seed carries its key in."""
    if path == COMPRESS:
        return f"?appkey={key}", {}
    if path in (SINGLE, PIPELINE):
        return f"?api_key={key}", {}
    if path == CROPPING:
        return "", {"ailabapi-api-key": key}
    return "", {"X-API-KEY": key}


def test_each_seeds_request_answers_through_nginx_as_it_does_direct(
    front: Front,  # noqa: F811
    api_key: str,  # noqa: F811
    live_server: str,
):
    def both(path: str, **kwargs: Any) -> tuple[httpx.Response, httpx.Response]:
        query, headers = key_for(path, api_key)
        return tuple(  # type: ignore[return-value]
            httpx.post(f"{url}{path}{query}", headers=headers, timeout=60, **kwargs)
            for url in (live_server, base(front))
        )

    # Seed 001: appkey in the query, a multipart file, a bound, quality, format.
    direct, edge = both(
        COMPRESS,
        files={"file": ("photo.jpg", PHOTO, "image/jpeg")},
        data={"maxWidth": "400", "quality": "60", "format": "webp"},
    )
    for r in (direct, edge):
        assert r.status_code == 200 and r.headers["content-type"] == "image/webp", r.text
        image = decode(r.content)
        assert (image.width, image.height, loader(r.content)) == (400, 300, "webp")
    assert "x-cache-status" not in edge.headers

    # Seed 004: the ailabapi-api-key header, multipart image, width, height.
    direct, edge = both(
        CROPPING,
        files={"image": ("photo.jpg", PHOTO, "image/jpeg")},
        data={"width": "400", "height": "400"},
        # The seed's request_id is the correlation id, which reaches imgcdn through nginx.
    )
    for r in (direct, edge):
        assert r.status_code == 200, r.text
        answer = r.json()
        assert answer["error_code"] == 0 and answer["request_id"] == r.headers["x-correlation-id"]
        assert answer["data"]["retain_location"] == {"width": 400, "height": 300, "y": 50, "x": 0}
    assert edge.json()["data"]["url"].startswith(f"{base(front)}/r/")  # the client's host
    image = decode(httpx.get(edge.json()["data"]["url"], timeout=30).content)
    assert (image.width, image.height) == (400, 400)

    # Seed 003: X-API-KEY, a multipart image_file, sync=1: the corrected image's URL.
    direct, edge = both(
        CORRECTION,
        files={"image_file": ("photo.jpg", PHOTO, "image/jpeg")},
        data={"sync": "1", "type": "1"},
    )
    for r in (direct, edge):
        assert r.status_code == 200 and r.json()["status"] == 200, r.text
    assert set(edge.json()["data"]) == set(direct.json()["data"])
    # An async task is queried with GET .../{task_id} through nginx too.
    _, queued = both(CORRECTION, files={"image_file": ("photo.jpg", PHOTO, "image/jpeg")})
    assert queued.status_code == 200, queued.text
    task_id = queued.json()["data"]["task_id"]
    state = httpx.get(
        f"{base(front)}{CORRECTION}/{task_id}", headers={"X-API-KEY": api_key}, timeout=30
    )
    assert state.status_code == 200 and state.json()["status"] == 200, state.text
    assert (
        httpx.head(
            f"{base(front)}{CORRECTION}/{task_id}", headers={"X-API-KEY": api_key}, timeout=30
        ).status_code
        == 200
    )


def test_seed_000s_request_and_its_correlation_id_reach_imgcdn_and_come_back(
    front: Front,  # noqa: F811
    api_key: str,  # noqa: F811
    live_server: str,
    upstream,  # noqa: F811
):
    # The seed's example, with the client's X-Correlation-ID; whatever imgcdn answers direct
    # (the image, once seed 000's routes are in; until then its 404) nginx answers the same.
    answers = [
        httpx.post(
            f"{url}{SINGLE}?api_key={api_key}",
            files={"image": ("photo.jpg", PHOTO, "image/jpeg")},
            data={"width": "800", "height": "600"},
            headers={"X-Correlation-ID": "seed000-corr-1"},
            timeout=60,
        )
        for url in (live_server, base(front))
    ]
    direct, edge = answers
    assert edge.status_code == direct.status_code
    assert edge.headers["content-type"] == direct.headers["content-type"]
    if direct.status_code == 200:
        assert decode(edge.content).width == decode(direct.content).width == 800
    else:
        assert edge.json() == direct.json()
    assert edge.headers["x-correlation-id"] == "seed000-corr-1"
    reached = upstream(SINGLE)
    assert [r["correlation_id"] for r in reached] == ["seed000-corr-1"] * 2
    piped = httpx.post(
        f"{base(front)}{PIPELINE}?api_key={api_key}",
        json={"image_url": "http://127.0.0.1:9/a.jpg", "operations": []},
        headers={"X-Correlation-ID": "seed000-corr-2"},
        timeout=60,
    )
    assert piped.headers["x-correlation-id"] == "seed000-corr-2"
    assert [r["correlation_id"] for r in upstream(PIPELINE)] == ["seed000-corr-2"]


@pytest.mark.parametrize("path", list(LIMITS))
def test_a_body_over_the_seeds_limit_is_nginx_s_413_in_the_seeds_envelope(
    front: Front,  # noqa: F811
    path: str,
    upstream,  # noqa: F811
):
    request = (
        f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; boundary=b\r\n"
        f"Content-Length: {LIMITS[path] + 1}\r\n\r\n--b"
    )
    answer = exchange(front, request.encode())
    assert answer.headers["content-type"] == "application/json"
    assert answer.headers["cache-control"] == "no-store"
    status, code, message = envelope(path, answer)
    assert code == "source_too_large" and f"over the {LIMITS[path]} byte" in message
    # Seed 001 folds 413 onto its table: a 400.
    assert answer.status == status == (400 if path == COMPRESS else 413)
    assert upstream("/") == []


@pytest.mark.parametrize(
    ("method", "path", "allow"),
    [
        ("GET", CORRECTION, "POST"),
        ("POST", f"{CORRECTION}/task_x", "GET, HEAD"),
        ("PUT", COMPRESS, "POST"),
        ("GET", CROPPING, "POST"),
        ("DELETE", SINGLE, "POST"),
        ("GET", PIPELINE, "POST"),
    ],
)
def test_a_wrong_method_is_answered_in_the_seeds_envelope(
    front: Front,  # noqa: F811
    method: str,
    path: str,
    allow: str,
    upstream,  # noqa: F811
):
    r = httpx.request(method, f"{base(front)}{path}", timeout=30)
    assert r.headers["allow"] == allow and r.headers["cache-control"] == "no-store"
    status, code, message = envelope(path, r)
    assert (code, message) == ("method_not_allowed", f"{method} is not allowed here")
    assert r.status_code == status == (400 if path == COMPRESS else 405)
    assert upstream("/") == []


@pytest.mark.parametrize(
    ("path", "seed_path"),
    [
        ("/api/x/../v1/compress", COMPRESS),
        ("/api/x/../image/editing/image-cropping", CROPPING),
        ("/api/x/../tasks/visual/correction", CORRECTION),
        ("/api/v1/x/../image-processing/resize", SINGLE),
    ],
)
def test_a_raw_uri_that_only_normalises_to_a_seeds_path_is_refused_in_its_envelope(
    front: Front,  # noqa: F811
    path: str,
    seed_path: str,
    upstream,  # noqa: F811
):
    # nginx matches the normalised URI; imgcdn routes the raw one (see /v1/image/).
    answer = exchange(
        front, f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n".encode()
    )
    _, code, _ = envelope(seed_path, answer)
    assert code == "not_found" and answer.status == (400 if seed_path == COMPRESS else 404)
    assert upstream("/") == []


@pytest.mark.parametrize("seed_path", [COMPRESS, CROPPING, PIPELINE])
def test_a_path_below_a_seeds_endpoint_is_a_not_found_in_its_envelope(
    front: Front,  # noqa: F811
    seed_path: str,
    upstream,  # noqa: F811
):
    r = httpx.post(f"{base(front)}{seed_path}/x", timeout=30)
    _, code, _ = envelope(seed_path, r)
    assert code == "not_found" and r.status_code == (400 if seed_path == COMPRESS else 404)
    assert upstream("/") == []


@pytest.fixture(params=["repo", "k8s"])
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def test_imgcdn_down_is_a_503_with_retry_after_in_each_seeds_envelope(kind: str, tmp_path: Path):
    dead = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    prefix = tmp_path / "nginx"
    conf, url, alive = edge_config(dead, kind, prefix)
    with running_nginx(find_nginx(), prefix, conf, alive):
        answers = {
            path: httpx.post(f"{url}{path}", data={"x": "1"}, timeout=30)
            for path in (CORRECTION, COMPRESS, CROPPING, SINGLE, PIPELINE)
        }
        answers[f"{CORRECTION}/t"] = httpx.get(f"{url}{CORRECTION}/t", timeout=30)
    for path, r in answers.items():
        assert r.status_code == 503 and r.headers["retry-after"] == "2", (path, r.text)
        assert r.headers["content-type"] == "application/json"
        assert envelope(path, r)[:2] == (503, "upstream_unavailable"), path


def test_the_playground_loads_through_nginx_with_its_csp(front: Front, upstream):  # noqa: F811
    url = base(front)
    page = httpx.get(f"{url}/playground", timeout=30)
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert page.headers["content-security-policy"].startswith("default-src 'none'")
    assert page.headers["cache-control"] == "no-cache"
    again = httpx.get(f"{url}/playground", headers={"If-None-Match": page.headers["etag"]})
    assert again.status_code == 304
    named = re.findall(r'(?:src|href)="(playground/static/[^"]+)"', page.text)
    assert len(named) == 2, page.text[:500]
    for path in ("/" + name for name in named):
        files = [httpx.get(f"{url}{path}{query}", timeout=30) for query in ("", "", "?x=1")]
        assert {f.status_code for f in files} == {200}
        assert (
            files[0].headers["content-security-policy"] == page.headers["content-security-policy"]
        )
        assert files[0].content == files[1].content == files[2].content
        assert len(upstream(path)) == 1, path  # nginx keeps one copy, as /docs/static/'s
    post = httpx.post(f"{url}/playground", content=b"", timeout=30)
    assert post.status_code == 405 and post.headers["allow"] == "GET, HEAD"
    assert httpx.get(f"{url}/playground/static", timeout=30).status_code == 404
