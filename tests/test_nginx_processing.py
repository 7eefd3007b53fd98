"""The processing API (/v1/image/) and its description (/v1/openapi.json, /docs) through the
real nginx: the repo's nginx.conf and the k8s edge config, each in front of a real imgcdn.

API keys are made through imgcdn's admin API on its own port (nginx does not pass it). What
reached imgcdn is read from its access log, and the headers it saw at `auth.authenticate`
(the seam every processing request passes through).
"""

from __future__ import annotations

import base64
import re
import select
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx2 as httpx
import pytest
from conftest import AUTH, IMAGES, TOKEN, decode, free_port, wait_until
from starlette.requests import Request
from test_nginx import find_nginx, running_nginx, upstream  # noqa: F401
from test_nginx_hostile import (  # noqa: F401
    Front,
    edge_config,
    exchange,
    k8s_front,
    read_answer,
    repo_front,
)

import server.auth

PHOTO = (IMAGES / "photo.jpg").read_bytes()  # 800 x 600
B64 = base64.b64encode(PHOTO).decode()
BODY_LIMIT = 68 * 1024 * 1024  # client_max_body_size of /v1/image/, in both configs


@pytest.fixture(params=["repo", "k8s"])
def front(request: pytest.FixtureRequest) -> Front:
    answer: Front = request.getfixturevalue(f"{request.param}_front")
    return answer


def base(front: Front) -> str:
    return f"http://127.0.0.1:{front.port}"


@pytest.fixture
def api_key(live_server: str) -> str:
    """A new API key with every scope, made on imgcdn's own port."""
    r = httpx.post(f"{live_server}/v1/keys", json={"name": "edge"}, headers=AUTH, timeout=30)
    assert r.status_code == 201, r.text
    key: str = r.json()["key"]
    return key


@pytest.fixture
def seen(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, str]]:
    """The headers of every request that reached `auth.authenticate` in imgcdn, with the
    scheme and host its URLs are built from."""
    found: list[dict[str, str]] = []
    real = server.auth.authenticate

    async def recording(request: Request, *args: Any, **kwargs: Any) -> Any:
        found.append({**request.headers, "(base_url)": str(request.base_url)})
        return await real(request, *args, **kwargs)

    monkeypatch.setattr(server.auth, "authenticate", recording)
    return found


def test_a_multipart_and_a_json_request_are_processed_through_nginx(front: Front, api_key: str):
    url = base(front)
    multipart = httpx.post(
        f"{url}/v1/image/resize",
        files={"image": ("p.jpg", PHOTO, "image/jpeg")},
        data={"width": "200"},
        headers={"Authorization": f"Bearer {api_key}"},
        timeout=60,
    )
    as_json = httpx.post(
        f"{url}/v1/image/process",
        json={"image": {"base64": B64}, "ops": [{"op": "resize", "params": {"width": 120}}]},
        headers={"X-API-KEY": api_key},
        timeout=60,
    )
    for answer, width in ((multipart, 200), (as_json, 120)):
        assert answer.status_code == 200, answer.text
        assert answer.headers["cache-control"] == "no-store"
        assert "x-cache-status" not in answer.headers
        assert answer.headers["ratelimit-limit"]  # imgcdn's, per key, through nginx
        # The public URL, the one the client called (port included), not imgcdn's.
        image_url = answer.json()["image_url"]
        assert image_url.startswith(f"{url}/r/"), image_url
        image = httpx.get(image_url, timeout=30)
        assert image.status_code == 200 and image.headers["content-type"] == "image/jpeg"
        assert decode(image.content).width == width


def test_a_chunked_upload_reaches_imgcdn_whole(front: Front, api_key: str):
    def chunks() -> Iterator[bytes]:
        body = b'{"image": {"base64": "%s"}, "width": 64}' % B64.encode()
        for start in range(0, len(body), 16384):
            yield body[start : start + 16384]

    r = httpx.post(
        f"{base(front)}/v1/image/resize?return=binary",
        content=chunks(),
        headers={"X-API-KEY": api_key, "Content-Type": "application/json"},
        timeout=60,
    )
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "image/jpeg" and decode(r.content).width == 64


def test_only_the_headers_the_api_needs_reach_imgcdn(
    front: Front, api_key: str, seen: list[dict[str, str]]
):
    r = httpx.post(
        f"{base(front)}/v1/image/metadata",
        json={"image": {"base64": B64}},
        headers={
            "Authorization": f"Bearer {api_key}",
            "X-API-KEY": api_key,
            "Idempotency-Key": "edge-headers-1",
            "X-Correlation-ID": "edge-corr-1",
            "Accept": "application/json",
            "Cookie": "session=secret",
            "User-Agent": "edge-test",
            "X-Forwarded-For": "203.0.113.9",
            "X-Forwarded-Host": "evil.example",
            "X-Forwarded-Proto": "https",  # nginx says what it saw: http
        },
        timeout=60,
    )
    assert r.status_code == 200, r.text
    assert r.headers["x-correlation-id"] == "edge-corr-1"
    [got] = seen
    assert got["authorization"] == f"Bearer {api_key}"
    assert got["x-api-key"] == api_key
    assert got["idempotency-key"] == "edge-headers-1"
    assert got["x-correlation-id"] == "edge-corr-1"
    assert got["content-type"] == "application/json"
    assert got["accept"] == "application/json"
    assert int(got["content-length"]) > len(B64)
    assert "cookie" not in got and "user-agent" not in got and "x-forwarded-host" not in got
    assert got["x-forwarded-for"] == "127.0.0.1"  # nginx's peer, never the client's claim
    assert got["x-forwarded-proto"] == "http"
    assert got["(base_url)"] == f"{base(front)}/"


@pytest.mark.parametrize(
    "header",
    [b"Authorization: Bearer a\x01b", b"X-API-KEY: \x7f", b"Idempotency-Key: a\x1bb",
     b"Content-Type: application/json\x0b", b"Accept: */*\x02", b"If-None-Match: \x03"],
)  # fmt: skip
def test_a_control_byte_in_a_passed_header_is_nginx_s_400_in_json(
    front: Front,
    header: bytes,
    upstream,  # noqa: F811
):
    # uvicorn would answer these in text/plain; nginx takes them, so it refuses them itself.
    for path in (b"/v1/image/list", b"/v1/openapi.json"):
        request = b"GET " + path + b" HTTP/1.1\r\nHost: x\r\n" + header + b"\r\n\r\n"
        answer = exchange(front, request)
        assert (answer.status, answer.headers["content-type"]) == (400, "application/json")
        assert answer.error()["code"] == "bad_request"
        assert "a control byte in Authorization" in answer.error()["message"]
    assert upstream("/") == []


def test_an_idempotency_key_replays_through_nginx(front: Front, api_key: str, upstream):  # noqa: F811
    body = {"image": {"base64": B64}, "width": 50}
    headers = {"X-API-KEY": api_key, "Idempotency-Key": "edge-replay-1"}
    first = httpx.post(f"{base(front)}/v1/image/resize", json=body, headers=headers, timeout=60)
    again = httpx.post(f"{base(front)}/v1/image/resize", json=body, headers=headers, timeout=60)
    assert first.status_code == again.status_code == 200, first.text
    assert again.headers["idempotent-replayed"] == "true"
    assert again.json() == first.json()
    other = httpx.post(
        f"{base(front)}/v1/image/resize", json={**body, "width": 51}, headers=headers, timeout=60
    )
    assert other.status_code == 422
    assert other.json()["error"]["code"] == "idempotency_key_reused"
    assert len(upstream("/v1/image/resize")) == 3


def test_nginx_never_caches_a_processing_answer(front: Front, api_key: str, upstream):  # noqa: F811
    body = {"image": {"base64": B64}, "ops": [{"op": "resize", "params": {"width": 77}}]}
    answers = [
        httpx.post(
            f"{base(front)}/v1/image/process", json=body, headers={"X-API-KEY": api_key}, timeout=60
        )
        for _ in range(2)
    ]
    # Both reached imgcdn: the second is imgcdn's own reuse of the stored result.
    assert [a.headers["x-cache"] for a in answers] == ["miss", "hit-result"]
    assert [r["status"] for r in upstream("/v1/image/process")] == [200, 200]
    assert all("x-cache-status" not in a.headers for a in answers)


def test_the_seed_routes_take_their_methods_through_nginx(front: Front, api_key: str):
    url, key = base(front), {"X-API-KEY": api_key}
    uploaded = httpx.post(
        f"{url}/v1/image/upload",
        files={"file": ("p.jpg", PHOTO, "image/jpeg")},
        data={"filename": "edge.jpg"},
        headers=key,
        timeout=60,
    )
    assert uploaded.status_code in (200, 201), uploaded.text
    image_id = uploaded.json()["id"]
    assert httpx.get(f"{url}/v1/image/get/{image_id}", headers=key, timeout=30).status_code == 200
    assert httpx.head(f"{url}/v1/image/list", headers=key, timeout=30).status_code == 200
    listed = httpx.get(f"{url}/v1/image/transformation/list", headers=key, timeout=30)
    assert listed.status_code == 200, listed.text
    job = httpx.get(f"{url}/v1/image/batch/status/job_x", headers=key, timeout=30)
    assert job.json()["error"]["code"] == "job_not_found"  # imgcdn's own answer, through
    gone = httpx.delete(f"{url}/v1/image/delete/{image_id}", headers=key, timeout=30)
    assert gone.status_code in (200, 204), gone.text
    # A method no /v1/image/ route takes: nginx's 405; one another path takes: imgcdn's.
    put = httpx.put(f"{url}/v1/image/resize", content=b"{}", headers=key, timeout=30)
    assert put.status_code == 405 and put.headers["allow"] == "GET, HEAD, POST, DELETE"
    assert put.json()["error"]["code"] == "method_not_allowed"
    get = httpx.get(f"{url}/v1/image/resize", headers=key, timeout=30)
    assert get.status_code == 405 and get.headers["allow"] == "POST"


def test_a_body_over_the_limit_is_nginx_s_413_in_json(front: Front, api_key: str, upstream):  # noqa: F811
    request = (
        b"POST /v1/image/resize HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"X-API-KEY: " + api_key.encode() + b"\r\nContent-Length: %d\r\n\r\n{" % (BODY_LIMIT + 1)
    )
    answer = exchange(front, request)
    assert (answer.status, answer.headers["content-type"]) == (413, "application/json")
    assert answer.headers["cache-control"] == "no-store"
    assert answer.error() == {
        "code": "source_too_large",
        "message": "body is over the 71303168 byte (68 MiB) limit of nginx",
        "param": "body",
    }
    assert upstream("/v1/image/") == []


def test_a_body_at_the_limit_passes_nginx_to_imgcdn(front: Front, api_key: str, upstream):  # noqa: F811
    # 68 MiB announced and sent: nginx takes it, and imgcdn (whose own cap for a JSON body is
    # 50 MiB x 4/3 + 256 KiB) refuses it in its own words.
    head = (
        b"POST /v1/image/resize HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"X-API-KEY: " + api_key.encode() + b"\r\nContent-Length: %d\r\n\r\n" % BODY_LIMIT
    )
    with socket.create_connection(("127.0.0.1", front.port), timeout=30) as sock:
        sock.sendall(head)
        chunk = b" " * (1 << 20)
        for _ in range(BODY_LIMIT >> 20):
            sock.sendall(chunk)
        answer = read_answer(sock, deadline_s=60)
    assert answer.status == 413
    assert answer.error()["code"] == "source_too_large"
    assert "limit is 70167210" in answer.error()["message"]  # imgcdn's, not nginx's
    assert len(upstream("/v1/image/resize")) == 1


def test_an_upload_asking_100_continue_is_answered_by_nginx_then_processed(
    front: Front, api_key: str
):
    # curl sends Expect: 100-continue with any body over 1 MB: nginx answers it itself.
    body = b'{"image": {"base64": "%s"}, "width": 40}' % B64.encode()
    head = (
        b"POST /v1/image/resize?return=binary HTTP/1.1\r\nHost: x\r\nX-API-KEY: %s\r\n"
        b"Content-Type: application/json\r\nExpect: 100-continue\r\n"
        b"Content-Length: %d\r\n\r\n" % (api_key.encode(), len(body))
    )
    with socket.create_connection(("127.0.0.1", front.port), timeout=30) as sock:
        sock.sendall(head)
        assert sock.recv(64).startswith(b"HTTP/1.1 100 Continue\r\n\r\n")
        sock.sendall(body)
        answer = read_answer(sock, deadline_s=60)
    assert answer.status == 200, answer.body[:200]
    assert decode(answer.body).width == 40


def test_a_stalled_upload_is_cut_off_by_nginx_and_never_reaches_imgcdn(
    repo_front: Front,  # noqa: F811
    k8s_front: Front,  # noqa: F811
    api_key: str,
    upstream,  # noqa: F811
):
    # client_body_timeout: 10 s between two reads of a body. uvicorn would wait for ever.
    head = (
        b"POST /v1/image/resize HTTP/1.1\r\nHost: x\r\nX-API-KEY: %s\r\n"
        b'Content-Type: application/json\r\nContent-Length: 100000\r\n\r\n{"image"'
        % api_key.encode()
    )
    socks = [
        socket.create_connection(("127.0.0.1", f.port), timeout=5) for f in (repo_front, k8s_front)
    ]
    started = time.monotonic()
    ended: dict[int, float] = {}
    try:
        for sock in socks:
            sock.sendall(head)
        while len(ended) < len(socks) and time.monotonic() - started < 20:
            waiting = [s for s in socks if s.fileno() not in ended]
            readable, _, _ = select.select(waiting, [], [], 1.0)
            for sock in readable:
                try:
                    data = sock.recv(65536)
                except ConnectionResetError:
                    data = b""
                if not data:
                    ended[sock.fileno()] = time.monotonic() - started
    finally:
        for sock in socks:
            sock.close()
    assert len(ended) == 2
    assert all(9 <= after <= 14 for after in ended.values()), ended
    assert upstream("/v1/image/") == []


ADMIN = [
    ("GET", "/v1/keys"),
    ("POST", "/v1/keys"),
    ("GET", "/v1/assets"),
    ("GET", "/v1/templates"),
    ("POST", "/v1/urls"),
    ("POST", "/v1/purge"),
    ("GET", "/v1/image"),  # the bare prefixes: no route, and no redirect from nginx
    ("GET", "/docs/static"),
    # The raw URI is what imgcdn routes: never one that nginx normalises into /v1/image/.
    ("GET", "/v1/assets/../image/list"),
    ("GET", "/v1/assets/%2e%2e/image/list"),
    ("GET", "/v1/image/../keys"),
    ("GET", "/v1/image/%2E%2E/keys"),
    ("GET", "/v1/image/..%2Fkeys"),
    ("GET", "/v1/ima%67e/list"),
    ("GET", "/v1/keys/../openapi.json"),
    ("GET", "/v1/assets/../../docs"),
    ("GET", "/v1/assets/../../docs/static/docs.js"),
    ("GET", "/v1/assets/../../t/_/photo.jpg"),
    ("GET", "/v1/assets/../../r/x.jpg?exp=1&sig=x"),
    ("GET", "/v1/assets/../../healthz"),
]


@pytest.mark.parametrize(("method", "path"), ADMIN)
def test_the_admin_api_is_still_not_public(
    front: Front,
    method: str,
    path: str,
    upstream,  # noqa: F811
):
    request = f"{method} {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\n"
    answer = exchange(front, request.encode() + b"Content-Length: 0\r\n\r\n")
    assert (answer.status, answer.headers["content-type"]) == (404, "application/json")
    assert answer.error() == {"code": "not_found", "message": "not served here"}
    assert upstream("/") == []


def test_the_api_description_is_served_through_nginx(front: Front, upstream):  # noqa: F811
    url = base(front)
    spec = httpx.get(f"{url}/v1/openapi.json", timeout=30)
    assert spec.status_code == 200 and spec.headers["content-type"] == "application/json"
    assert "/v1/image/resize" in spec.json()["paths"]
    etag = spec.headers["etag"]
    again = httpx.get(f"{url}/v1/openapi.json", headers={"If-None-Match": etag}, timeout=30)
    assert again.status_code == 304 and again.headers["etag"] == etag
    page = httpx.get(f"{url}/docs", timeout=30)
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert page.headers["content-security-policy"].startswith("default-src 'none'")
    # The page names its files relative to itself: docs/static/...
    files_named = re.findall(r'(?:src|href)="(docs/static/[^"]+)"', page.text)
    assert len(files_named) >= 3, page.text[:500]
    for path in ("/" + name for name in files_named):
        files = [httpx.get(f"{url}{path}{query}", timeout=30) for query in ("", "", "?x=1")]
        assert {f.status_code for f in files} == {200}
        assert files[0].headers["cache-control"] == "public, max-age=86400"
        assert files[0].content == files[1].content == files[2].content
        # The second and a stranger's ?x=1 are the one copy nginx keeps.
        assert len(upstream(path)) == 1, path
    assert httpx.head(f"{url}/docs", timeout=30).status_code == 200
    post = httpx.post(f"{url}/v1/openapi.json", content=b"{}", timeout=30)
    assert post.status_code == 405 and post.headers["allow"] == "GET, HEAD"
    assert httpx.get(f"{url}/docs/", timeout=30).status_code == 404


def test_an_api_key_in_the_query_is_kept_out_of_nginx_s_access_log(
    repo_front: Front,  # noqa: F811
    api_key: str,
    tmp_path: Path,
):
    r = httpx.post(
        f"{base(repo_front)}/v1/image/metadata?api_key={api_key}",
        json={"image": {"base64": B64}},
        timeout=60,
    )
    assert r.status_code == 200, r.text
    log = tmp_path / "repo-nginx" / "logs" / "access.log"

    def logged() -> str:
        return log.read_text() if log.exists() else ""

    wait_for(lambda: "/v1/image/metadata" in logged())
    assert api_key not in logged()
    assert "/v1/image/metadata?(query not logged: it holds a key)" in logged()


def test_a_flood_from_one_address_is_cut_off_by_nginx_before_imgcdn(
    front: Front,
    upstream,  # noqa: F811
):
    # No key at all: imgcdn could charge no key for these; nginx's guard (50/s, bursts of
    # 100, per address) refuses the rest.
    with httpx.Client(base_url=base(front), timeout=30) as http:
        answers = [http.get("/v1/image/list") for _ in range(300)]
    statuses = [a.status_code for a in answers]
    assert set(statuses) == {401, 429}, set(statuses)
    refused = [a for a in answers if a.status_code == 429]
    assert len(refused) >= 100
    assert refused[0].json()["error"]["code"] == "rate_limited"
    assert refused[0].headers["retry-after"] == "1"
    assert refused[0].headers["content-type"] == "application/json"
    assert len(upstream("/v1/image/list")) == statuses.count(401)


def test_imgcdn_not_answering_is_a_503_in_json_with_retry_after(kind: str, tmp_path: Path):
    dead = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    prefix = tmp_path / "nginx"
    conf, url, alive = edge_config(dead, kind, prefix)
    with running_nginx(find_nginx(), prefix, conf, alive):
        r = httpx.post(f"{url}/v1/image/resize", json={"width": 1}, timeout=30)
    assert r.status_code == 503 and r.headers["retry-after"] == "2"
    assert r.headers["content-type"] == "application/json"
    assert r.json()["error"]["code"] == "upstream_unavailable"


@pytest.fixture(params=["repo", "k8s"])
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def wait_for(condition: Callable[[], bool]) -> None:
    wait_until(condition, seconds=5)
