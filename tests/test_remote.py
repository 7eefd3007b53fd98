"""Remote sources: real fetches from a local origin, and SSRF refusals made before connecting.

Traffic only ever goes to 127.0.0.1 (or ::1). Every non-loopback address below is refused
before a session exists, which the `no_session` guard turns into a test failure if not.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import socket
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
from conftest import AUTH, error_body
from starlette.testclient import TestClient

from server import remote
from server.errors import ImgcdnError
from server.origins import SourceOrigin
from server.remote import FetchPolicy, check_url, fetch
from server.settings import Settings

PHOTO = (Path(__file__).parent / "images" / "photo.jpg").read_bytes()
BIG = 200_000
CAP = 100_000
OPEN = FetchPolicy(max_bytes=1_000_000, timeout_s=5, allow_private=True)
CLOSED = FetchPolicy(max_bytes=1_000_000, timeout_s=5)


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: Origin

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        self.server.requests.append((url.path, dict(self.headers)))
        with contextlib.suppress(ConnectionError):  # clients may leave early: that's the point
            self.route(url.path, parse_qs(url.query))

    def route(self, path: str, query: dict[str, list[str]]) -> None:
        if path == "/photo.jpg":
            self.reply(200, PHOTO, "image/jpeg")
        elif path == "/big":
            self.reply(200, b"x" * BIG, "image/jpeg")
        elif path == "/claims-big":  # says 1 GB, sends 10 bytes: only the header can refuse it
            self.send_response(200)
            self.send_header("Content-Length", str(10**9))
            self.end_headers()
            self.wfile.write(b"x" * 10)
            self.close_connection = True
        elif path == "/chunked":
            self.send_response(200)
            self.send_header("Content-Type", "image/jpeg")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for _ in range(BIG // 10_000):
                self.wfile.write(b"2710\r\n" + b"x" * 10_000 + b"\r\n")
            self.wfile.write(b"0\r\n\r\n")
        elif path == "/close":  # no Content-Length, no Content-Type: the body ends at close
            self.send_response(200)
            self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(b"x" * int(query["n"][0]))
            self.close_connection = True
        elif path == "/lying":  # Content-Length under the cap, body over it, in one write
            head = b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\nConnection: close\r\n\r\n"
            self.wfile.write(head + b"x" * BIG)
            self.close_connection = True
        elif path.startswith("/redirect/"):
            hops = int(path.rsplit("/", 1)[1])
            if hops == 0:
                self.reply(200, PHOTO, "image/jpeg")
            elif hops % 2:  # alternate absolute and relative Locations
                self.redirect(f"http://127.0.0.1:{self.server.server_port}/redirect/{hops - 1}")
            else:
                self.redirect(str(hops - 1))
        elif path == "/to":
            self.redirect(query["loc"][0], cookie=True)
        elif path == "/no-location":
            self.reply(302, b"", None)
        elif path.startswith("/status/"):
            self.reply(int(path.rsplit("/", 1)[1]), b"busy", "text/plain")
        elif path == "/slow":
            self.server.release.wait(timeout=30)
            self.reply(200, PHOTO, "image/jpeg")
        else:
            self.reply(404, b"not found", "text/plain")

    def reply(self, status: int, body: bytes, content_type: str | None) -> None:
        self.send_response(status)
        if content_type:
            self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def redirect(self, location: str, cookie: bool = False) -> None:
        self.send_response(302)
        self.send_header("Location", location)
        if cookie:
            self.send_header("Set-Cookie", "session=secret; Path=/")
        self.send_header("Content-Length", "0")
        self.end_headers()


class Origin(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), Handler)
        self.release = threading.Event()
        self.requests: list[tuple[str, dict[str, str]]] = []
        self.url = f"http://127.0.0.1:{self.server_port}"


@pytest.fixture(scope="module")
def origin() -> Iterator[Origin]:
    server = Origin()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.release.set()
    server.shutdown()
    server.server_close()
    thread.join()


class Listener:
    """Listening sockets on 127.0.0.1 (and ::1) at one port, counting the connections made.

    Nothing accepts while a test runs: a completed handshake waits in the backlog, where
    `connections()` finds it afterwards.
    """

    def __init__(self) -> None:
        self.sockets = [socket.create_server(("127.0.0.1", 0))]
        self.port = self.sockets[0].getsockname()[1]
        with contextlib.suppress(OSError):
            self.sockets.append(socket.create_server(("::1", self.port), family=socket.AF_INET6))
        for sock in self.sockets:
            sock.setblocking(False)

    def connections(self) -> int:
        count = 0
        for sock in self.sockets:
            while True:
                try:
                    conn, _ = sock.accept()
                except BlockingIOError:
                    break
                conn.close()
                count += 1
        return count


@pytest.fixture
def listener() -> Iterator[Listener]:
    counter = Listener()
    yield counter
    for sock in counter.sockets:
        sock.close()


@pytest.fixture
def no_session(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail the test if fetch() gets as far as opening a session (the only way to connect)."""

    def refuse(*args: object) -> None:
        raise AssertionError("fetch() opened a session: a connection could have been made")

    monkeypatch.setattr(remote, "_session", refuse)


class SlowOrigin:
    """An asyncio HTTP origin on 127.0.0.1 that takes its time, in a thread of its own.

    `/drip-body`: headers at once, then one body byte a tick; `/drip-head`: the status line
    and headers one byte a tick; `/hop/N?pause=S`: S seconds of silence, then a redirect to
    `/hop/N-1` (`/hop/0` is the photo). A drip stops when the client leaves.
    """

    TICK = 0.05

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.tasks: set[asyncio.Task[None]] = set()
        self.server = self.loop.run_until_complete(
            asyncio.start_server(self.handle, "127.0.0.1", 0)
        )
        self.port = self.server.sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self.tasks.add(task)
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            target = urlsplit(head.split(b" ", 2)[1].decode())
            await self.route(target.path, parse_qs(target.query), writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass  # the client left: that is what a deadline does
        except asyncio.CancelledError:
            pass  # close() stops a drip still going; the stream callback must not log it
        finally:
            writer.close()
            self.tasks.discard(task)

    async def route(
        self, path: str, query: dict[str, list[str]], writer: asyncio.StreamWriter
    ) -> None:
        head = b"HTTP/1.1 200 OK\r\nContent-Type: image/jpeg\r\nContent-Length: %d\r\n\r\n"
        if path == "/drip-body":
            writer.write(head % 10_000)
            await self.drip(b"x" * 10_000, writer)
        elif path == "/drip-head":
            await self.drip(head % len(PHOTO), writer)
            writer.write(PHOTO)
        elif path.startswith("/hop/"):
            hops = int(path.rsplit("/", 1)[1])
            await asyncio.sleep(float(query["pause"][0]))
            if hops == 0:
                writer.write(head % len(PHOTO) + PHOTO)
            else:
                location = f"/hop/{hops - 1}?pause={query['pause'][0]}"
                writer.write(
                    b"HTTP/1.1 302 Found\r\nLocation: %s\r\nContent-Length: 0\r\n\r\n"
                    % location.encode()
                )
        await writer.drain()

    async def drip(self, data: bytes, writer: asyncio.StreamWriter) -> None:
        for i in range(len(data)):
            writer.write(data[i : i + 1])
            await writer.drain()  # raises once the client has gone
            await asyncio.sleep(self.TICK)

    def close(self) -> None:
        async def stop() -> None:
            self.server.close()
            for task in list(self.tasks):
                task.cancel()
            await asyncio.gather(*self.tasks, return_exceptions=True)
            await self.server.wait_closed()

        asyncio.run_coroutine_threadsafe(stop(), self.loop).result(timeout=10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=10)
        self.loop.close()


@pytest.fixture(scope="module")
def slow_origin() -> Iterator[SlowOrigin]:
    server = SlowOrigin()
    yield server
    server.close()


def refused(url: str, policy: FetchPolicy = CLOSED) -> ImgcdnError:
    with pytest.raises(ImgcdnError) as info:
        asyncio.run(fetch(url, policy))
    return info.value


# -- fetching, with allow_private for the loopback origin ------------------------------------


def test_a_source_comes_back_with_its_bytes_and_content_type(origin: Origin) -> None:
    assert asyncio.run(fetch(f"{origin.url}/photo.jpg", OPEN)) == (PHOTO, "image/jpeg")


def test_requests_say_imgcdn_ask_for_identity_and_carry_no_cookies(origin: Origin) -> None:
    location = f"{origin.url}/photo.jpg"
    asyncio.run(fetch(f"{origin.url}/to?loc={location}", OPEN))
    (_, first), (_, second) = origin.requests[-2:]
    for headers in (first, second):
        assert headers["User-Agent"] == "imgcdn"
        assert headers["Accept-Encoding"] == "identity"
    assert "Cookie" not in second  # the redirect set one


def test_proxies_from_the_environment_are_ignored(
    origin: Origin, listener: Listener, monkeypatch: pytest.MonkeyPatch
) -> None:
    proxy = f"http://127.0.0.1:{listener.port}"
    for name in ("HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "ALL_PROXY"):
        monkeypatch.setenv(name, proxy)
    assert asyncio.run(fetch(f"{origin.url}/photo.jpg", OPEN))[0] == PHOTO
    assert listener.connections() == 0


def test_a_content_length_over_the_cap_is_413_before_the_body_is_read(origin: Origin) -> None:
    error = refused(f"{origin.url}/claims-big", OPEN)
    assert (error.status, error.code) == (413, "source_too_large")


@pytest.mark.parametrize("path", ["/big", "/chunked", f"/close?n={BIG}"])
def test_a_body_over_the_cap_is_413_however_it_is_framed(origin: Origin, path: str) -> None:
    error = refused(f"{origin.url}{path}", FetchPolicy(max_bytes=CAP, allow_private=True))
    assert (error.status, error.code) == (413, "source_too_large")
    assert str(CAP) in error.message


def test_a_body_exactly_at_the_cap_is_fetched(origin: Origin) -> None:
    policy = FetchPolicy(max_bytes=CAP, allow_private=True)
    assert asyncio.run(fetch(f"{origin.url}/close?n={CAP}", policy)) == (b"x" * CAP, None)


def test_a_body_longer_than_its_content_length_is_a_broken_connection_503(origin: Origin) -> None:
    # aiohttp sees the extra bytes as the server dropping the connection, which is what a
    # transient failure looks like too: worth a retry, so 503 with Retry-After.
    error = refused(f"{origin.url}/lying", FetchPolicy(max_bytes=CAP, allow_private=True))
    assert (error.status, error.code, error.retry_after) == (503, "source_unavailable", 5)


@pytest.mark.parametrize("hops", [1, 2, 3])
def test_up_to_three_redirects_are_followed(origin: Origin, hops: int) -> None:
    assert asyncio.run(fetch(f"{origin.url}/redirect/{hops}", OPEN))[0] == PHOTO


def test_a_fourth_redirect_is_422(origin: Origin) -> None:
    error = refused(f"{origin.url}/redirect/4", OPEN)
    assert (error.status, error.code) == (422, "source_fetch_failed")
    assert error.message == "source redirects more than 3 times"


def test_a_redirect_without_location_is_422(origin: Origin) -> None:
    error = refused(f"{origin.url}/no-location", OPEN)
    assert (error.status, error.code) == (422, "source_fetch_failed")


@pytest.mark.parametrize("status", [500, 502, 503, 429])
def test_an_origin_that_is_down_or_busy_is_503_with_retry_after(
    origin: Origin, status: int
) -> None:
    error = refused(f"{origin.url}/status/{status}", OPEN)
    assert (error.status, error.code, error.param) == (503, "source_unavailable", "url")
    assert error.retry_after == 5 and str(status) in error.message


def test_an_origin_404_is_422_naming_the_status(origin: Origin) -> None:
    error = refused(f"{origin.url}/missing", OPEN)
    assert (error.status, error.code, error.param) == (422, "source_fetch_failed", "url")
    assert "404" in error.message


def test_a_source_that_never_answers_is_504_source_timeout(origin: Origin) -> None:
    origin.release.clear()
    try:
        started = time.monotonic()
        error = refused(f"{origin.url}/slow", FetchPolicy(1000, timeout_s=0.3, allow_private=True))
        assert time.monotonic() - started < 3
    finally:
        origin.release.set()
    assert (error.status, error.code) == (504, "source_timeout")
    assert error.message == "source did not answer within 0.3 s"


DEADLINE = 1.0
MARGIN = 1.5  # a loaded CI machine answers late; a drip or a stall would take minutes


def timed_out(url: str) -> tuple[ImgcdnError, float]:
    policy = FetchPolicy(1_000_000, timeout_s=DEADLINE, allow_private=True)
    started = time.monotonic()
    error = refused(url, policy)
    return error, time.monotonic() - started


@pytest.mark.parametrize("path", ["/drip-body", "/drip-head", "/hop/3?pause=0.4"])
def test_a_source_that_takes_too_long_in_all_is_504_at_the_deadline(
    slow_origin: SlowOrigin, path: str
) -> None:
    # Bytes keep coming (and each hop answers well within the deadline): only one deadline
    # over the whole fetch, redirects and body included, stops it.
    error, elapsed = timed_out(f"{slow_origin.url}{path}")
    assert (error.status, error.code, error.param) == (504, "source_timeout", "url")
    assert DEADLINE <= elapsed < DEADLINE + MARGIN
    assert f"{DEADLINE:g} s" in error.message


def test_the_timeout_message_says_how_much_of_the_body_came(slow_origin: SlowOrigin) -> None:
    error, _ = timed_out(f"{slow_origin.url}/drip-body")
    assert error.message.startswith("source did not send its body within 1 s (")
    assert "bytes came)" in error.message


def test_a_fetch_policy_defaults_to_the_settings_deadline() -> None:
    assert FetchPolicy(max_bytes=1).timeout_s == Settings().source_timeout_s


def test_a_dripping_source_url_upload_is_504_at_the_deadline_and_stores_nothing(
    make_client: Callable[..., TestClient], slow_origin: SlowOrigin
) -> None:
    client = make_client(allow_private_sources=True, source_timeout_s=DEADLINE)
    started = time.monotonic()
    r = client.post("/v1/assets", json={"url": f"{slow_origin.url}/drip-body"}, headers=AUTH)
    elapsed = time.monotonic() - started
    body = error_body(r, 504)
    assert (body["code"], body["param"]) == ("source_timeout", "url")
    assert DEADLINE <= elapsed < DEADLINE + MARGIN
    assert client.get("/v1/assets", headers=AUTH).json()["items"] == []


def test_a_closed_port_is_503_with_retry_after(listener: Listener) -> None:
    port = listener.port
    for sock in listener.sockets:
        sock.close()
    error = refused(f"http://127.0.0.1:{port}/", OPEN)
    assert (error.status, error.code, error.param) == (503, "source_unavailable", "url")
    assert error.retry_after == 5


# -- SSRF: refused, and never connected to -----------------------------------------------------

LOOPBACK_FORMS = [
    "127.0.0.1",
    "localhost",
    "2130706433",
    "0x7f000001",
    "0177.0.0.1",
    "127.1",
    "127.0.0.1.",
    "[::1]",
    "[::ffff:127.0.0.1]",
    "[::ffff:7f00:1]",
    "0.0.0.0",  # noqa: S104 -- a URL host under test, nothing binds to it
]


@pytest.mark.parametrize("host", LOOPBACK_FORMS)
def test_every_loopback_form_is_403_without_a_connection(listener: Listener, host: str) -> None:
    error = refused(f"http://{host}:{listener.port}/photo.jpg")
    assert (error.status, error.code, error.param) == (403, "source_forbidden", "url")
    assert "127.0.0.1" not in error.message
    assert listener.connections() == 0


@pytest.mark.parametrize(
    ("host", "kind"),
    [
        ("10.0.0.1", "private"),
        ("172.16.0.1", "private"),
        ("192.168.1.1", "private"),
        ("169.254.169.254", "metadata"),
        ("[fd00:ec2::254]", "metadata"),
        ("100.64.0.1", "carrier-grade NAT"),
        ("[fd00::1]", "unique-local"),
        ("[fe80::1]", "link-local"),
        ("[fec0::1]", "site-local"),
        ("224.0.0.1", "multicast"),
        ("[ff02::1]", "multicast"),
        ("240.0.0.1", "reserved"),
        ("255.255.255.255", "reserved"),
        ("[::ffff:10.0.0.1]", "private"),
        ("[::ffff:a9fe:a9fe]", "metadata"),
        ("[2002:7f00:1::]", "loopback"),
        ("[2002:a00:1::]", "private"),
        ("[64:ff9b::7f00:1]", "loopback"),
        ("[64:ff9b::a9fe:a9fe]", "metadata"),
        ("[2001:0:4136:e378:8000:63bf:80ff:fffe]", "loopback"),  # Teredo client 127.0.0.1
        ("012.0.0.1", "private"),  # octal 10.0.0.1
        ("0xa9.0xfe.0xa9.0xfe", "metadata"),
        ("2852039166", "metadata"),
        ("0x0a000001", "private"),
    ],
)
def test_non_public_addresses_are_403_naming_the_kind_before_any_session(
    no_session: None, host: str, kind: str
) -> None:
    error = refused(f"http://{host}/latest/meta-data/")
    assert (error.status, error.code) == (403, "source_forbidden")
    assert kind in error.message


def test_allow_private_is_off_by_default() -> None:
    assert FetchPolicy(max_bytes=1).allow_private is False


def test_a_redirect_to_a_non_public_address_is_403(
    origin: Origin, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Let the origin's own address count as public: the policy stays the production one.
    real = remote.refusal
    origin_address = ipaddress.ip_address("127.0.0.1")
    monkeypatch.setattr(remote, "refusal", lambda a: None if a == origin_address else real(a))
    assert asyncio.run(fetch(f"{origin.url}/photo.jpg", CLOSED))[0] == PHOTO
    error = refused(f"{origin.url}/to?loc=http://0x7f000002:{origin.server_port}/photo.jpg")
    assert (error.status, error.code) == (403, "source_forbidden")
    assert error.message == "redirect target host is a loopback address"


def allow(*entries: str) -> tuple[SourceOrigin, ...]:
    return tuple(SourceOrigin.parse(entry) for entry in entries)


def test_a_redirect_is_checked_against_the_allowed_origins(origin: Origin) -> None:
    policy = FetchPolicy(1_000_000, allowed_hosts=allow(origin.url), allow_private=True)
    error = refused(f"{origin.url}/to?loc=http://10.0.0.1/latest/meta-data/", policy)
    assert (error.status, error.code) == (403, "source_forbidden")
    assert error.message == (
        "redirect target origin http://10.0.0.1:80 is not an allowed source origin"
    )


def test_a_redirect_to_another_port_of_an_allowed_host_is_403_without_a_connection(
    origin: Origin, listener: Listener
) -> None:
    policy = FetchPolicy(
        1_000_000, timeout_s=2, allowed_hosts=allow(origin.url), allow_private=True
    )
    error = refused(f"{origin.url}/to?loc=http://127.0.0.1:{listener.port}/photo.jpg", policy)
    assert (error.status, error.code, error.param) == (403, "source_forbidden", "url")
    assert f"http://127.0.0.1:{listener.port} is not" in error.message
    assert listener.connections() == 0


@pytest.mark.parametrize("entry", ["https://localhost:{port}", "localhost:{port}"])
def test_a_redirect_to_http_of_an_https_only_origin_is_403_without_a_connection(
    origin: Origin, listener: Listener, entry: str
) -> None:
    allowed = allow(origin.url, entry.format(port=listener.port))
    policy = FetchPolicy(1_000_000, timeout_s=2, allowed_hosts=allowed, allow_private=True)
    error = refused(f"{origin.url}/to?loc=http://localhost:{listener.port}/a.jpg", policy)
    assert (error.status, error.code) == (403, "source_forbidden")
    assert error.message.endswith(
        f"http://localhost:{listener.port} is not an allowed source origin"
    )
    assert listener.connections() == 0


def test_a_redirect_to_another_allowed_origin_is_followed(origin: Origin) -> None:
    other = f"http://localhost:{origin.server_port}"
    policy = FetchPolicy(1_000_000, allowed_hosts=allow(origin.url, other), allow_private=True)
    assert asyncio.run(fetch(f"{origin.url}/to?loc={other}/photo.jpg", policy))[0] == PHOTO


def test_source_hosts_from_settings_refuse_a_redirect_to_another_port(
    make_client: Callable[..., TestClient], origin: Origin, listener: Listener
) -> None:
    hosts = Settings.load(
        {
            "IMGCDN_SOURCE_HOSTS": f"https://cdn.example.com, {origin.url}",
            "IMGCDN_ALLOW_PRIVATE_SOURCES": "1",
        }
    )
    client = make_client(allow_private_sources=True, source_hosts=hosts.source_hosts)
    direct = client.post("/v1/assets", json={"url": f"{origin.url}/photo.jpg"}, headers=AUTH)
    assert direct.status_code == 201, direct.text
    bounce = f"{origin.url}/to?loc=http://127.0.0.1:{listener.port}/photo.jpg"
    r = client.post("/v1/assets", json={"url": bounce}, headers=AUTH)
    assert (error_body(r, 403)["code"], listener.connections()) == ("source_forbidden", 0)
    assert len(client.get("/v1/assets", headers=AUTH).json()["items"]) == 1


@pytest.mark.parametrize(
    "location", ["ftp://example.com/a.jpg", "file:///etc/passwd", "http://user:pw@example.com/"]
)
def test_a_redirect_to_a_bad_url_is_400(origin: Origin, location: str) -> None:
    error = refused(f"{origin.url}/to?loc={location}", OPEN)
    assert (error.status, error.code) == (400, "invalid_url")
    assert error.message.startswith("redirect target")


# -- URL shape and allow-list --------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "ftp://example.com/a.jpg",
        "file:///etc/passwd",
        "gopher://example.com/",
        "data:image/png;base64,iVBORw0KGgo=",
        "javascript:alert(1)",
        "//example.com/a.jpg",
        "http://user:pw@example.com/a.jpg",
        "http://user@example.com/a.jpg",
        "http:///a.jpg",
        "http://exa mple.com/",
        "http://256.0.0.1/",
        "http://1.2.3.4.5/",
        "http://[fe80::1%25eth0]/",
        "http://example.com/" + "a" * 2048,
    ],
)
def test_malformed_or_non_http_urls_are_400(no_session: None, url: str) -> None:
    error = refused(url)
    assert (error.status, error.code, error.param) == (400, "invalid_url", "url")


@pytest.mark.parametrize(
    ("url", "entries"),
    [
        ("https://img.example.com/a.jpg", ("img.example.com",)),
        ("https://IMG.Example.com./a.jpg", ("img.example.com",)),
        ("https://img.example.com:443/a.jpg", ("https://img.example.com",)),
        ("https://img.example.com:8443/a.jpg", ("img.example.com:8443",)),
        ("http://img.example.com/a.jpg", ("http://img.example.com:80",)),
        ("https://a.example.com/a.jpg", ("*.example.com",)),
        ("https://a.b.example.com/a.jpg", ("other.org", "*.example.com")),
        ("http://a.example.com:8080/a.jpg", ("http://*.example.com:8080",)),
        ("http://0x5db8d822/a.jpg", ("http://93.184.216.34",)),  # one address, two spellings
        ("http://[2001:db8:0::1]:8080/a.jpg", ("http://[2001:DB8::1]:8080",)),
    ],
)
def test_an_allowed_origin_matches_scheme_host_and_port(url: str, entries: tuple[str, ...]) -> None:
    # allow_private: the documentation addresses above are not public; the origin is the point.
    check_url(url, FetchPolicy(1, allowed_hosts=allow(*entries), allow_private=True))


@pytest.mark.parametrize(
    ("url", "entries"),
    [
        ("http://img.example.com/a.jpg", ("img.example.com",)),  # no scheme: https only
        ("https://img.example.com:8443/a.jpg", ("img.example.com",)),
        ("https://img.example.com/a.jpg", ("http://img.example.com",)),
        ("https://img.example.com/a.jpg", ("https://img.example.com:8443",)),
        ("https://example.com/a.jpg", ("*.example.com",)),
        ("https://badexample.com/a.jpg", ("*.example.com",)),
        ("http://a.example.com/a.jpg", ("*.example.com",)),
        ("https://a.example.com:8443/a.jpg", ("*.example.com",)),
        ("https://example.com.evil.org/a.jpg", ("example.com",)),
        ("https://img.example.com/a.jpg", ("example.com",)),
        ("http://93.184.216.35/a.jpg", ("http://93.184.216.34",)),
    ],
)
def test_origins_outside_the_allow_list_are_403_before_any_session(
    no_session: None, url: str, entries: tuple[str, ...]
) -> None:
    error = refused(url, FetchPolicy(1, allowed_hosts=allow(*entries)))
    assert (error.status, error.code, error.param) == (403, "source_forbidden", "url")
    assert error.message.endswith("is not an allowed source origin")


def test_an_allowed_origin_is_fetched_and_others_are_not(origin: Origin) -> None:
    allowed = allow(f"http://localhost:{origin.server_port}")
    policy = FetchPolicy(1_000_000, allowed_hosts=allowed, allow_private=True)
    url = f"http://localhost:{origin.server_port}/photo.jpg"
    assert asyncio.run(fetch(url, policy))[0] == PHOTO
    assert refused(f"{origin.url}/photo.jpg", policy).status == 403


def test_an_allowed_origin_still_may_not_be_a_private_address(listener: Listener) -> None:
    policy = FetchPolicy(1, allowed_hosts=allow(f"http://localhost:{listener.port}"))
    error = refused(f"http://localhost:{listener.port}/", policy)
    assert (error.status, error.code) == (403, "source_forbidden")
    assert listener.connections() == 0
