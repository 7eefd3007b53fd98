"""`imgcdn` as users run it (SPEC §1, §4): a real process on a real port, its log and its exit."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx2 as httpx
import pytest
from conftest import IMAGES, decode, free_port, wait_until

from server.settings import FIELDS, Settings

IMGCDN = Path(sys.executable).parent / "imgcdn"
CHROMIUM_ACCEPT = "image/avif,image/webp,image/apng,image/svg+xml,image/*,*/*;q=0.8"
LOG_KEYS = {"method", "path", "status", "ms", "cache", "bytes"}


def env_for(data_dir: Path, **settings: str) -> dict[str, str]:
    """The test runner's environment without any IMGCDN_* of its own, plus `settings`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("IMGCDN_")}
    env["IMGCDN_DATA_DIR"] = str(data_dir)
    env.update(settings)
    return env


@dataclass
class Served:
    process: subprocess.Popen[bytes]
    base: str
    data_dir: Path
    stderr: Path
    healthz_answers: int

    @property
    def token(self) -> str:
        return (self.data_dir / "admin-token").read_text().strip()

    def log(self) -> str:
        return self.stderr.read_text(errors="replace")

    def new_key(self, name: str, **fields: object) -> str:
        """A new API key's secret, made through the admin API as an operator would."""
        made = httpx.post(
            f"{self.base}/v1/keys",
            json={"name": name, **fields},
            headers={"Authorization": f"Bearer {self.token}"},
            timeout=30,
        )
        assert made.status_code == 201, made.text
        return str(made.json()["key"])

    def stop(self, deadline_s: float = 20) -> int:
        self.process.terminate()
        return self.process.wait(timeout=deadline_s)


@contextlib.contextmanager
def serving(workdir: Path, *args: str, **settings: str) -> Iterator[Served]:
    """`imgcdn serve --port <free> *args` with its data in `workdir`, once /healthz answers."""
    port = free_port()
    data_dir = workdir / "data"
    stderr = workdir / "stderr.log"
    with stderr.open("wb") as err:
        process = subprocess.Popen(
            [str(IMGCDN), "serve", "--port", str(port), *args],
            env=env_for(data_dir, **settings),
            cwd=workdir,
            stdout=err,
            stderr=err,
        )
    served = Served(process, f"http://127.0.0.1:{port}", data_dir, stderr, 0)
    try:

        def healthy() -> bool:
            if process.poll() is not None:
                raise AssertionError(f"imgcdn exited with {process.returncode}:\n{served.log()}")
            try:
                ok = httpx.get(f"{served.base}/healthz", timeout=2).status_code == 200
            except httpx.TransportError:
                return False
            served.healthz_answers += 1
            return ok

        wait_until(healthy, seconds=30)
        yield served
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=10)


def access_lines(log: str) -> list[dict[str, object]]:
    lines = []
    for line in log.splitlines():
        with contextlib.suppress(ValueError):
            record = json.loads(line)
            if isinstance(record, dict) and "method" in record:
                lines.append(record)
    return lines


def test_a_served_process_uploads_negotiates_revalidates_logs_and_stops(tmp_path):
    with serving(tmp_path) as served:
        token = served.token
        admin = {"Authorization": f"Bearer {token}"}
        with httpx.Client(base_url=served.base, timeout=30) as http:
            put = http.put(
                "/v1/assets/photo.jpg", content=(IMAGES / "photo.jpg").read_bytes(), headers=admin
            )
            url = "/t/_/photo.jpg?w=800&fmt=auto"
            get = http.get(url, headers={"Accept": CHROMIUM_ACCEPT, "X-Request-ID": "e2e-1"})
            head = http.head(url, headers={"Accept": CHROMIUM_ACCEPT})
            revalidated = http.get(
                url, headers={"Accept": CHROMIUM_ACCEPT, "If-None-Match": get.headers["etag"]}
            )
        started = time.monotonic()
        code = served.stop(deadline_s=20)
        stopped_in = time.monotonic() - started
        log = served.log()

    assert put.status_code == 201, put.text
    assert get.status_code == 200
    assert get.headers["content-type"] == "image/avif"
    assert get.headers["vary"] == "Accept"
    assert get.headers["x-correlation-id"] == "e2e-1"
    image = decode(get.content)
    assert (image.width, image.height) == (800, 600)
    assert head.status_code == 200
    assert head.content == b""
    assert head.headers["content-length"] == str(len(get.content))
    assert head.headers["etag"] == get.headers["etag"]
    assert revalidated.status_code == 304
    assert revalidated.content == b""
    # uvicorn re-raises SIGTERM once it has shut down cleanly: death by that signal is success.
    assert code in (0, -signal.SIGTERM)
    assert stopped_in < 20
    assert "Application shutdown complete" in log

    records = access_lines(log)
    assert all(set(r) >= LOG_KEYS for r in records)
    healthz = [r for r in records if r["path"] == "/healthz"]
    rest = [(r["method"], r["path"], r["status"]) for r in records if r["path"] != "/healthz"]
    assert len(healthz) == served.healthz_answers
    assert rest == [
        ("PUT", "/v1/assets/photo.jpg", 201),
        ("GET", "/t/_/photo.jpg", 200),
        ("HEAD", "/t/_/photo.jpg", 200),
        ("GET", "/t/_/photo.jpg", 304),
    ]
    delivered = next(r for r in records if r["path"] == "/t/_/photo.jpg" and r["status"] == 200)
    assert delivered["cache"] == "miss"
    assert delivered["bytes"] == len(get.content)
    assert delivered.get("correlation_id") == "e2e-1"
    assert str(served.data_dir / "admin-token") in log  # where the token is...
    assert token not in log  # ...never what it is


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("IMGCDN_MAX_QUEUE", "lots"),
        ("IMGCDN_RENDER_TIMEOUT_S", "0"),
        ("IMGCDN_ADMIN_TOKENS", "short"),
        ("IMGCDN_MAX_QEUE", "8"),
    ],
    ids=["not-a-number", "out-of-range", "short-token", "misspelt"],
)
def test_a_bad_setting_stops_start_up_with_one_line_naming_it(tmp_path, name, value):
    result = run_imgcdn(tmp_path, "serve", "--port", str(free_port()), **{name: value})

    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert name in lines[0]


def run_imgcdn(tmp_path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """`imgcdn ARGS` run to its end in tmp_path, on a data dir of its own."""
    return subprocess.run(
        [str(IMGCDN), *args],
        env=env_for(tmp_path / "data", **env),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def test_imgcdn_settings_prints_a_table_naming_every_variable(tmp_path):
    result = run_imgcdn(tmp_path, "settings")

    assert result.returncode == 0, result.stderr
    rows = [line for line in result.stdout.splitlines() if line.startswith("| `IMGCDN_")]
    named = {row.split("`")[1] for row in rows}
    assert named == {spec.env for spec in FIELDS.values()}
    assert len(rows) == len(FIELDS)
    assert "IMGCDN_DATA_DIR" in named
    assert "IMGCDN_MAX_QUEUE" in named


def test_imgcdn_settings_prints_each_default_as_its_variable_is_written(tmp_path):
    result = run_imgcdn(tmp_path, "settings")

    defaults = Settings()
    by_env = {spec.env: name for name, spec in FIELDS.items()}
    literal = {}
    for row in result.stdout.splitlines()[2:]:
        env_cell, default_cell = (cell.strip() for cell in row.split("|")[1:3])
        name = by_env[env_cell.strip("`")]
        if default_cell.startswith("`"):
            literal[name] = default_cell.strip("`")
            # What the table shows, set as the variable, is the default itself.
            loaded = Settings.load({env_cell.strip("`"): literal[name]})
            assert getattr(loaded, name) == getattr(defaults, name), row
        else:  # not a value to copy: a default computed at start, or nothing at all
            assert name in ("render_threads", "unsigned") or not getattr(defaults, name), row
    assert literal["variant_store"] == "1"
    assert literal["allow_private_sources"] == "0"
    assert literal["s3_timeout_s"] == "5"


def test_two_workers_start_and_serve_a_variant(tmp_path):
    with serving(tmp_path, "--workers", "2") as served:
        admin = {"Authorization": f"Bearer {served.token}"}
        with httpx.Client(base_url=served.base, timeout=30) as http:
            put = http.put(
                "/v1/assets/photo.jpg", content=(IMAGES / "photo.jpg").read_bytes(), headers=admin
            )
            variants = [http.get("/t/_/photo.jpg?w=200") for _ in range(4)]
        code = served.stop()
        log = served.log()

    assert put.status_code == 201, put.text
    for r in variants:
        assert r.status_code == 200
        assert r.headers["content-type"] == "image/jpeg"
        assert decode(r.content).width == 200
    assert log.count("Started server process") == 2
    json_records(log)  # each worker logs JSON lines too
    assert code in (0, -signal.SIGTERM)


def json_records(log: str) -> list[dict[str, object]]:
    """Every line of the log as a JSON object: a line that is not one fails the test."""
    records = []
    for line in log.splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            raise AssertionError(f"a log line is not JSON: {line!r}\n{log}") from None
        assert isinstance(record, dict), line
        records.append(record)
    return records


@pytest.mark.parametrize("level", ["info", "debug"])
def test_a_truncated_upload_leaves_only_json_lines_in_the_log(tmp_path, level):
    truncated = (IMAGES / "photo.jpg").read_bytes()[:3000]  # libvips warns "error in tile"
    with serving(tmp_path, IMGCDN_LOG_LEVEL=level) as served:
        r = httpx.put(
            f"{served.base}/v1/assets/cut.jpg",
            content=truncated,
            headers={"Authorization": f"Bearer {served.token}"},
        )
        served.stop()
        records = json_records(served.log())

    assert r.status_code == 422, r.text
    assert ("PUT", 422) in [(r.get("method"), r.get("status")) for r in records]
    assert any("Application shutdown complete" in str(r.get("message")) for r in records)
    libvips = [r for r in records if r.get("logger") == "pyvips"]
    if level == "info":  # the 422 already says the image is broken: no second word on it
        assert libvips == []
    else:
        assert any("error in tile" in str(r["message"]) for r in libvips)


@pytest.mark.parametrize("workers", ["1", "2"])
def test_a_taken_port_is_one_line_naming_it_and_no_banner(tmp_path, workers):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run_imgcdn(tmp_path, "serve", "--port", str(port), "--workers", workers)

    assert result.returncode != 0
    assert result.stdout == ""
    assert result.stderr.splitlines() == [
        f"imgcdn: port {port} on 127.0.0.1 is in use (stop what holds it, or choose "
        "another with --port)"
    ]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    with serving(tmp_path_factory.mktemp("server")) as served:
        yield served


def test_healthz_and_readyz_answer_json(server):
    healthz = httpx.get(f"{server.base}/healthz")
    readyz = httpx.get(f"{server.base}/readyz")

    assert healthz.status_code == 200
    assert healthz.headers["content-type"] == "application/json"
    assert healthz.json() == {"status": "ok"}
    assert readyz.status_code == 200
    assert readyz.json()["status"] == "ready"


@pytest.mark.parametrize("path", ["/nope", "/t", "/v1/nothing/here", "/"])
def test_an_unknown_route_is_a_404_json(server, path):
    r = httpx.get(f"{server.base}{path}")

    assert r.status_code == 404
    assert r.headers["content-type"] == "application/json"
    assert r.headers["cache-control"] == "no-store"
    assert r.json()["error"]["code"] == "not_found"


@pytest.mark.parametrize(
    ("method", "path"),
    [("POST", "/healthz"), ("DELETE", "/t/_/photo.jpg"), ("PATCH", "/v1/assets/photo.jpg")],
)
def test_a_wrong_method_is_a_405_json(server, method, path):
    r = httpx.request(method, f"{server.base}{path}")

    assert r.status_code == 405
    assert r.headers["content-type"] == "application/json"
    assert r.headers["cache-control"] == "no-store"
    assert r.json()["error"]["code"] == "method_not_allowed"


def test_a_405_says_which_methods_are_allowed(server):
    r = httpx.post(f"{server.base}/healthz")

    assert r.status_code == 405
    assert set(r.headers.get("allow", "").replace(" ", "").split(",")) == {"GET", "HEAD"}
