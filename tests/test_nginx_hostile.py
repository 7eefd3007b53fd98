"""Hostile traffic at the edge, on the real nginx: the repo's nginx.conf and the k8s edge
config (k8s/base/edge/nginx.conf), each in front of a real imgcdn.

What nginx refuses itself it answers in imgcdn's JSON error shape with no-store; what it
passes on never trips uvicorn (which answers protocol errors in text/plain and has no
header timeout at all); a client that sends its headers slowly is cut off in 10 s. Raw
sockets: no HTTP client sends these requests.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import select
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx2 as httpx
import pytest
from conftest import AUTH, free_port, upload
from test_nginx import Ports, find_nginx, imgcdn_requests, render_config, running_nginx

K8S_CONF = Path(__file__).parent.parent / "k8s" / "base" / "edge" / "nginx.conf"
HEADER_TIMEOUT_S = 10.0  # client_header_timeout, in both configs


@dataclass(frozen=True)
class Front:
    """A running nginx's public port: the repo's public server, or the k8s router."""

    kind: str
    port: int


@dataclass(frozen=True)
class Answer:
    status: int
    headers: dict[str, str]  # names lower-cased
    body: bytes

    def error(self) -> dict[str, str]:
        parsed: dict[str, dict[str, str]] = json.loads(self.body)
        return parsed["error"]


@pytest.fixture
def repo_front(live_server: str, tmp_path: Path) -> Iterator[Front]:
    ports = Ports(public=free_port(), internal=free_port())
    with running_nginx(
        find_nginx(),
        tmp_path / "repo-nginx",
        render_config(live_server, ports),
        f"http://127.0.0.1:{ports.public}/healthz",
    ):
        yield Front("repo", ports.public)


def render_k8s_config(imgcdn: str, router: int, shard: int, gate: int, prefix: Path) -> str:
    """The k8s edge config as one pod with this test's addresses: a ring of its own shard,
    and its files under `prefix` (as .ci/validate-deploy checks it)."""
    generated = prefix / "gen"
    generated.mkdir(parents=True)
    (prefix / "cache").mkdir()
    (generated / "resolver.conf").write_text("resolver 127.0.0.1 valid=10s;\n")
    # start.sh writes one line per pod with `resolve`, which Debian's nginx 1.22 lacks and
    # an address needs not.
    (generated / "peers.conf").write_text(f"server 127.0.0.1:{shard} max_fails=2;\n")
    changes = {
        "/tmp/imgcdn/": f"{generated}/",
        "/var/cache/nginx/": f"{prefix}/cache/",
        "/tmp/": f"{prefix}/",
        "server imgcdn:8080;": f"server {imgcdn.removeprefix('http://')};",
        "listen 8080 default_server;": f"listen 127.0.0.1:{router} default_server;",
        "listen 8081;": f"listen 127.0.0.1:{shard};",
        "listen 127.0.0.1:8082;": f"listen 127.0.0.1:{gate};",
        "server 127.0.0.1:8082;": f"server 127.0.0.1:{gate};",
    }
    text = K8S_CONF.read_text()
    for old in changes:
        assert old in text, f"{K8S_CONF} should hold {old!r}"
    # One pass, longest first: no replacement (a path under /tmp) is rewritten again.
    pattern = "|".join(re.escape(old) for old in sorted(changes, key=len, reverse=True))
    text = re.sub(pattern, lambda m: changes[m.group(0)], text)
    return ("user root;\n" + text) if os.geteuid() == 0 else text


def edge_config(imgcdn: str, kind: str, prefix: Path) -> tuple[str, str, str]:
    """(config, public base URL, health URL) of the repo's nginx.conf ("repo") or the k8s
    edge ("k8s") in front of `imgcdn`, on free ports."""
    if kind == "repo":
        ports = Ports(public=free_port(), internal=free_port())
        public = f"http://127.0.0.1:{ports.public}"
        return (
            render_config(imgcdn, ports),
            public,
            f"http://127.0.0.1:{ports.internal}/nginx_status",
        )
    router = free_port()
    conf = render_k8s_config(imgcdn, router, free_port(), free_port(), prefix)
    return conf, f"http://127.0.0.1:{router}", f"http://127.0.0.1:{router}/nginx-health"


@pytest.fixture
def k8s_front(live_server: str, tmp_path: Path) -> Iterator[Front]:
    prefix = tmp_path / "k8s-nginx"
    router, shard, gate = free_port(), free_port(), free_port()
    conf = render_k8s_config(live_server, router, shard, gate, prefix)
    with running_nginx(find_nginx(), prefix, conf, f"http://127.0.0.1:{router}/healthz"):
        yield Front("k8s", router)


@pytest.fixture(params=["repo", "k8s"])
def front(request: pytest.FixtureRequest) -> Front:
    answer: Front = request.getfixturevalue(f"{request.param}_front")
    return answer


def read_answer(sock: socket.socket, deadline_s: float = 10.0) -> Answer:
    """One HTTP/1.1 answer, framed by its Content-Length (nginx may keep the connection
    open after it, or reset it)."""
    data = b""
    deadline = time.monotonic() + deadline_s
    while b"\r\n\r\n" not in data or len(data) < _length(data):
        sock.settimeout(max(0.01, deadline - time.monotonic()))
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            break
        if not chunk:
            break
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    assert re.match(r"HTTP/1\.1 \d{3}", status_line), f"not an HTTP answer: {data[:200]!r}"
    headers = {}
    for line in lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return Answer(int(status_line.split()[1]), headers, body)


def _length(data: bytes) -> int:
    """How long an answer starting with `data` is, once its head is in."""
    head, _, _ = data.partition(b"\r\n\r\n")
    found = re.search(rb"\r\ncontent-length:\s*(\d+)", head, re.I)
    return len(head) + 4 + (int(found.group(1)) if found else 0)


def exchange(front: Front, request: bytes) -> Answer:
    with socket.create_connection(("127.0.0.1", front.port), timeout=10) as sock:
        # Answered before the whole request is sent (a 64 KiB one): read that answer.
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            sock.sendall(request)
        return read_answer(sock)


GET = b"GET /t/_/photo.jpg?w=16 HTTP/1.1\r\nHost: edge.test\r\n"
# What nginx answers: (status, error code, words of the message)
MALFORMED = (400, "bad_request", "malformed HTTP request")
NOT_ASCII = (400, "bad_request", "the request URI must be ASCII: percent-encode")
URI_TOO_LONG = (414, "uri_too_long", "the request line is over 8 KB")
HEADER_TOO_LARGE = (431, "header_too_large", "a header line is over 8 KB, or all of them")
A_BODY = (413, "body_not_accepted", "requests here take no body")
NOT_HTTP_1 = (505, "http_version_not_supported", "HTTP/1.0 or HTTP/1.1 only")
NOT_CHUNKED = (501, "transfer_encoding_not_supported", "chunked only")
NOT_FOUND = (404, "not_found", "not served here")
PROTOCOL_ERRORS = [
    ("a NUL in the path", b"GET /t/_/a\x00.jpg HTTP/1.1\r\nHost: x\r\n\r\n", MALFORMED),
    ("a control byte in the path", b"GET /t/_/a\x01.jpg HTTP/1.1\r\nHost: x\r\n\r\n", MALFORMED),
    ("a space in the path", b"GET /t/_/a b.jpg HTTP/1.1\r\nHost: x\r\n\r\n", MALFORMED),
    ("raw UTF-8 in the path", "GET /t/_/café.jpg HTTP/1.1\r\nHost: x\r\n\r\n".encode(), NOT_ASCII),
    ("raw UTF-8 in a query", "GET /t/_/a.jpg?q=ñ HTTP/1.1\r\nHost: x\r\n\r\n".encode(), NOT_ASCII),
    ("raw UTF-8 after /healthz", "GET /healthz?é HTTP/1.1\r\nHost: x\r\n\r\n".encode(), NOT_ASCII),
    ("garbage after the HTTP version", b"GET /t/_/a.jpg HTTP/1.1x\r\nHost: x\r\n\r\n", MALFORMED),
    ("HTTP/2.0 in text", b"GET /t/_/a.jpg HTTP/2.0\r\nHost: x\r\n\r\n", NOT_HTTP_1),
    ("a TLS ClientHello", bytes.fromhex("16030100a5010000a10303") + bytes(40), MALFORMED),
    ("a 64 KiB path", b"GET /t/_/" + b"a" * 65536 + b" HTTP/1.1\r\nHost: x\r\n\r\n", URI_TOO_LONG),
    ("a 64 KiB query", b"GET /t/_/a.jpg?w=" + b"1" * 65536 + b" HTTP/1.1\r\n\r\n", URI_TOO_LONG),
    ("a space in a header name", GET + b"X A: b\r\n\r\n", MALFORMED),
    ("a NUL in a header value", GET + b"X-A: a\x00b\r\n\r\n", MALFORMED),
    ("a folded header line", GET + b"X-A: a\r\n b\r\n\r\n", MALFORMED),
    ("a second Host", GET + b"Host: y\r\n\r\n", MALFORMED),
    ("a 9 KB header line", GET + b"Cookie: " + b"a" * 9000 + b"\r\n\r\n", HEADER_TOO_LARGE),
    ("35 KB of headers", GET + b"".join(b"X-%d: %s\r\n" % (i, b"a" * 7000) for i in range(5))
     + b"\r\n", HEADER_TOO_LARGE),
    ("Content-Length and Transfer-Encoding",
     GET + b"Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", MALFORMED),
    ("an unknown Transfer-Encoding", GET + b"Transfer-Encoding: gzip\r\n\r\n", NOT_CHUNKED),
    ("a malformed chunked body", GET + b"Transfer-Encoding: chunked\r\n\r\nzz\r\n", MALFORMED),
    ("a body on a GET", GET + b"Content-Length: 3\r\n\r\nabc", A_BODY),
    ("a chunked body on a GET",
     GET + b"Transfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n", A_BODY),
    ("5 MB announced on a POST",
     b"POST /t/_/a.jpg HTTP/1.1\r\nHost: x\r\nContent-Length: 5000000\r\n\r\n", A_BODY),
    ("the error page's own URI", b"GET /_imgcdn_error HTTP/1.1\r\nHost: x\r\n\r\n", NOT_FOUND),
]  # fmt: skip


def test_protocol_errors_are_answered_by_nginx_in_json_never_cached(front, caplog):
    caplog.set_level(logging.INFO, logger="imgcdn.access")
    wrong = []
    for what, request, (status, code, says) in PROTOCOL_ERRORS:
        answer = exchange(front, request)
        got = (
            answer.status,
            answer.headers.get("content-type"),
            answer.headers.get("cache-control"),
        )
        if got != (status, "application/json", "no-store"):
            wrong.append(f"{what}: {got} {answer.body[:80]!r}")
        elif answer.error()["code"] != code or says not in answer.error()["message"]:
            wrong.append(f"{what}: {answer.error()}")
    assert wrong == []
    assert imgcdn_requests(caplog, "/t/") == []  # all of them answered by nginx


def test_headers_that_uvicorn_would_refuse_never_reach_it(front, live_server):
    # nginx takes a control byte in a header value; uvicorn answers it with a text/plain 400.
    # nginx passes on only the headers it sets, the client's X-Forwarded-For included.
    with httpx.Client(base_url=live_server, headers=AUTH, timeout=30) as api:
        upload(api, "photo.jpg", "photo.jpg")
    hostile = (
        b"User-Agent: a\x01b\r\nCookie: a=\x7f\r\nX-Forwarded-For: 203.0.113.9\x1b\r\n"
        b"X-Correlation-ID: a\x01b\r\nX-Request-ID: \x02\r\nAccept: image/webp\x01\r\n"
    )
    image = exchange(front, GET + hostile + b"\r\n")
    health = exchange(front, b"GET /healthz HTTP/1.1\r\nHost: x\r\n" + hostile + b"\r\n")

    assert (image.status, image.headers["content-type"]) == (200, "image/jpeg"), image.body[:80]
    assert (health.status, health.body) == (200, b'{"status":"ok"}')
    assert re.fullmatch(r"[0-9a-f]{32}", image.headers["x-correlation-id"])


@dataclass
class Drip:
    """A connection sending a request's headers one byte a second."""

    name: str
    sock: socket.socket
    started: float = field(default_factory=time.monotonic)
    sent: int = 0
    ended_after: float | None = None
    answer: bytes = b""


def test_a_client_sending_its_headers_a_byte_a_second_is_cut_off_within_10_s(repo_front, k8s_front):
    # uvicorn would hold such a connection for ever. nginx's 10 s are in all, not between
    # two bytes: counted from the connect on a new connection, from the first byte of the
    # next request on a kept-alive one.
    drips = []
    for front in (repo_front, k8s_front):
        fresh = socket.create_connection(("127.0.0.1", front.port), timeout=5)
        drips.append(Drip(f"{front.kind}, a new connection", fresh))
        kept = socket.create_connection(("127.0.0.1", front.port), timeout=5)
        kept.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        assert read_answer(kept).status == 200
        drips.append(Drip(f"{front.kind}, a kept-alive connection", kept))
    request = GET + b"X-Slow: " + b"a" * 100
    deadline = time.monotonic() + HEADER_TIMEOUT_S + 3
    try:
        while time.monotonic() < deadline and any(d.ended_after is None for d in drips):
            dripping = [d for d in drips if d.ended_after is None]
            for drip in dripping:
                try:
                    drip.sock.send(request[drip.sent : drip.sent + 1])
                    drip.sent += 1
                except OSError:
                    drip.ended_after = time.monotonic() - drip.started
            # The next byte in a second, unless nginx answers or closes first.
            readable, _, _ = select.select([d.sock for d in dripping], [], [], 1.0)
            for drip in dripping:
                if drip.sock in readable and drip.ended_after is None:
                    with contextlib.suppress(ConnectionResetError):  # nginx resets
                        drip.answer = drip.sock.recv(65536)
                    drip.ended_after = time.monotonic() - drip.started
    finally:
        for drip in drips:
            drip.sock.close()

    ended = {d.name: (d.ended_after and round(d.ended_after, 1), d.answer) for d in drips}
    for drip in drips:
        assert drip.ended_after is not None, ended
        assert HEADER_TIMEOUT_S - 1 <= drip.ended_after <= HEADER_TIMEOUT_S + 2, ended
        assert drip.answer == b"", ended  # closed, no answer: nginx's 408 is logged only
        assert drip.sent >= HEADER_TIMEOUT_S - 2, ended  # bytes kept coming all along
