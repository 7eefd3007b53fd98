"""The command line as a user runs it: the installed `imgcdn` script against a real server."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import httpx2
import pytest
from conftest import AUTH, IMAGES, TOKEN, decode, free_port

from server import cli
from server.client import IMAGE_SUFFIXES
from server.settings import Settings
from server.signing import split, verify

IMGCDN = str(Path(sys.executable).parent / "imgcdn")
# What `imgcdn upload tests/images` sends: every test image, whatever formats join them.
IMAGE_COUNT = len([p for p in IMAGES.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES])
KEY = "cli-signing-key-0123456789abcdef0123"


def run(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("IMGCDN_")}
    return subprocess.run(
        [IMGCDN, *args], capture_output=True, text=True, env={**clean, **env}, timeout=60
    )


def test_sign_prints_a_url_the_server_accepts_and_that_expires():
    out = run("sign", "/t/_/photo.jpg?w=100", "--expires-in", "60", IMGCDN_SIGNING_KEYS=KEY)
    assert out.returncode == 0, out.stderr
    url = out.stdout.strip()
    path, query = url.split("?", 1)
    signed, sig = split(path, query)
    assert sig is not None
    verify(signed, sig, [KEY])
    assert "&exp=" in url


def test_sign_without_keys_says_so_and_fails():
    out = run("sign", "/t/_/photo.jpg?w=100")
    assert out.returncode == 2
    assert "IMGCDN_SIGNING_KEYS" in out.stderr


@pytest.mark.parametrize("suffix", [".yaml", ".json"])
def test_templates_apply_creates_then_changes_nothing_on_a_second_run(
    live_server, tmp_path, suffix
):
    templates = {
        "card": {"params": {"w": 100, "fmt": "webp"}, "allow": ["w"], "public": True},
        "thumb": {"params": {"w": 40, "h": 40}},
    }
    file = tmp_path / f"templates{suffix}"
    if suffix == ".json":
        file.write_text(json.dumps(templates))
    else:
        import yaml

        file.write_text(yaml.safe_dump(templates))
    first = run("templates", "apply", str(file), "--url", live_server, "--token", TOKEN)
    second = run("templates", "apply", str(file), "--url", live_server, "--token", TOKEN)
    assert first.returncode == 0, first.stderr
    assert "card: created (version 1)" in first.stdout
    assert "card: unchanged (version 1)" in second.stdout
    assert "thumb: unchanged (version 1)" in second.stdout
    got = httpx2.get(f"{live_server}/v1/templates/card", headers=AUTH).json()
    assert got["params"] == {"w": 100, "fmt": "webp"}


def test_templates_apply_updates_what_changed_and_reports_bad_templates(live_server, tmp_path):
    file = tmp_path / "t.json"
    file.write_text(json.dumps({"card": {"params": {"w": 100}}}))
    assert (
        run("templates", "apply", str(file), "--url", live_server, "--token", TOKEN).returncode == 0
    )
    file.write_text(json.dumps({"card": {"params": {"w": 120}}}))
    changed = run("templates", "apply", str(file), "--url", live_server, "--token", TOKEN)
    assert "card: updated (version 2)" in changed.stdout
    file.write_text(json.dumps({"card": {"params": {"w": 0}}}))
    bad = run("templates", "apply", str(file), "--url", live_server, "--token", TOKEN)
    assert bad.returncode == 1
    assert "w must be" in bad.stderr


def test_upload_sends_a_folder_under_a_prefix_with_progress(live_server):
    out = run("upload", str(IMAGES), "--prefix", "demo/", "--url", live_server, "--token", TOKEN)
    assert out.returncode == 0, out.stderr
    assert f"{IMAGE_COUNT} uploaded, 0 failed" in out.stderr
    assert "[" in out.stderr  # the progress bar
    image = httpx2.get(f"{live_server}/t/_/demo/photo.jpg?w=64")
    assert decode(image.content).width == 64


def test_upload_with_a_wrong_token_fails_clearly(live_server):
    out = run("upload", str(IMAGES / "photo.jpg"), "--url", live_server, "--token", "x" * 20)
    assert out.returncode == 1
    assert "401" in out.stderr


def test_upload_stops_at_the_first_refused_token_instead_of_trying_every_file(live_server):
    out = run("upload", str(IMAGES), "--url", live_server, "--token", "x" * 20)

    assert out.returncode == 1
    assert out.stderr.count("401") == 1, out.stderr  # one refusal, not one per file
    assert f"1/{IMAGE_COUNT}" in out.stderr and f"2/{IMAGE_COUNT}" not in out.stderr
    assert "stopped: the token was refused (check --token or IMGCDN_TOKEN)" in out.stderr
    assert f"0 of {IMAGE_COUNT} uploaded" in out.stderr


def test_upload_to_a_server_that_is_not_there_stops_at_the_first_file():
    url = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    out = run("upload", str(IMAGES), "--url", url, "--token", "x" * 20)

    assert out.returncode == 1
    assert out.stderr.count(f"cannot reach {url}") == 1, out.stderr
    assert f"2/{IMAGE_COUNT}" not in out.stderr
    assert f"0 of {IMAGE_COUNT} uploaded" in out.stderr


@pytest.mark.parametrize(("suffix", "text"), [(".json", "{not json"), (".yaml", "a: [unclosed")])
def test_templates_apply_with_a_malformed_file_says_so_in_one_line(tmp_path, suffix, text):
    file = tmp_path / f"templates{suffix}"
    file.write_text(text)
    out = run("templates", "apply", str(file), "--token", "x" * 20)

    assert out.returncode == 1
    assert "Traceback" not in out.stderr
    assert out.stderr.startswith(f"imgcdn: {file}: not valid {suffix[1:].upper()}"), out.stderr
    assert len(out.stderr.strip().splitlines()) == 1, out.stderr


@pytest.mark.parametrize(
    ("workers", "configured", "expected"),
    [
        (2, None, str(-(-2 * (os.cpu_count() or 1) // 2))),  # 2 x cores, shared
        (3, None, str(-(-2 * (os.cpu_count() or 1) // 3))),
        (2, 7, None),  # set by the operator: every worker gets what was asked
        (1, None, None),
    ],
)
def test_serve_divides_the_default_render_threads_among_workers(
    monkeypatch, tmp_path, workers, configured, expected
):
    from server import cli
    from server.settings import Settings

    for name in ("IMGCDN_RENDER_THREADS", "PROMETHEUS_MULTIPROC_DIR"):  # serve sets both
        monkeypatch.setenv(name, "")  # so the test's end restores them, even when unset
        monkeypatch.delenv(name)
    seen: list[str | None] = []

    def run(config, sock):  # where uvicorn would start, on the socket serve bound
        seen.append(os.environ.get("IMGCDN_RENDER_THREADS"))
        return 0

    monkeypatch.setattr(cli, "_run", run)
    settings = Settings(data_dir=tmp_path, admin_tokens=(TOKEN,))
    if configured is not None:
        settings = Settings(data_dir=tmp_path, admin_tokens=(TOKEN,), render_threads=configured)
    assert cli.serve_forever(settings, "127.0.0.1", 0, workers, None) == 0
    assert seen == [expected]


@pytest.mark.parametrize("port", ["99999", "-1", "\u00b2", "http"])
def test_serve_with_a_port_that_is_no_port_says_so_without_a_traceback(port):
    out = run("serve", "--port", port)

    assert out.returncode == 2
    assert "Traceback" not in out.stderr
    assert "argument --port: must be a port number in 0..65535" in out.stderr


def test_a_start_that_fails_after_the_bind_closes_its_socket(tmp_path, monkeypatch):
    bound: list[socket.socket] = []
    real_listen = cli._listen

    def listen(host: str, port: int) -> socket.socket:
        bound.append(real_listen(host, port))
        return bound[-1]

    def refuse(level: str) -> None:
        raise RuntimeError("logging refused")

    monkeypatch.setattr(cli, "_listen", listen)
    monkeypatch.setattr("server.app.configure_logging", refuse)
    with pytest.raises(RuntimeError, match="logging refused"):
        cli.serve_forever(Settings(data_dir=tmp_path), "127.0.0.1", 0, 1, None)
    assert bound and bound[0].fileno() == -1  # closed, not left to the garbage collector


def test_connections_to_the_serve_socket_have_nagle_off_on_asyncios_loop():
    # serve runs uvicorn on asyncio's loop, which sets TCP_NODELAY only on connections whose
    # socket says IPPROTO_TCP; with Nagle on, a response written in two pieces waits 40 ms
    # for the client's delayed ACK (a repeated POST at c=1 took 44 ms instead of 0.3).
    sock = cli._listen("127.0.0.1", 0)
    sock.listen()
    port = sock.getsockname()[1]
    nodelay: list[int] = []
    accepted_one = asyncio.Event()

    class Probe(asyncio.Protocol):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            accepted = transport.get_extra_info("socket")
            nodelay.append(accepted.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
            transport.close()
            accepted_one.set()

    async def main() -> None:
        server = await asyncio.get_running_loop().create_server(Probe, sock=sock)
        async with server:
            _reader, writer = await asyncio.open_connection("127.0.0.1", port)
            await asyncio.wait_for(accepted_one.wait(), 5)
            writer.close()

    asyncio.run(main())
    assert nodelay and nodelay[0] != 0
