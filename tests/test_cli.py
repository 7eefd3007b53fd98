"""The command line as a user runs it: the installed `imgcdn` script against a real server."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import httpx2
import pytest
from conftest import AUTH, IMAGES, TOKEN, decode

from server.signing import split, verify

IMGCDN = str(Path(sys.executable).parent / "imgcdn")
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
    assert "6 uploaded, 0 failed" in out.stderr
    assert "[" in out.stderr  # the progress bar
    image = httpx2.get(f"{live_server}/t/_/demo/photo.jpg?w=64")
    assert decode(image.content).width == 64


def test_upload_with_a_wrong_token_fails_clearly(live_server):
    out = run("upload", str(IMAGES / "photo.jpg"), "--url", live_server, "--token", "x" * 20)
    assert out.returncode == 1
    assert "401" in out.stderr


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
    monkeypatch.setattr(
        cli, "_run", lambda config: seen.append(os.environ.get("IMGCDN_RENDER_THREADS")) or 0
    )
    settings = Settings(data_dir=tmp_path, admin_tokens=(TOKEN,))
    if configured is not None:
        settings = Settings(data_dir=tmp_path, admin_tokens=(TOKEN,), render_threads=configured)
    assert cli.serve_forever(settings, "127.0.0.1", 0, workers, None) == 0
    assert seen == [expected]
