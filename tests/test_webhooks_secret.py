"""The webhook signing secret: IMGCDN_WEBHOOK_SECRET, else one generated into the data dir
once however many processes start at the same moment, and with Redis one value agreed by
every replica (a real redis-server child), kept when Redis loses its data. Never logged."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import stat
import subprocess
import sys
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from conftest import TOKEN, wait_until
from redisproc import RedisProcess

from server import webhooks
from server.errors import StateUnavailable
from server.runtime import Runtime
from server.settings import Settings, SettingsError
from server.webhooks import Attempt, deliver

ROOT = Path(__file__).parent.parent


@contextlib.asynccontextmanager
async def running(settings: Settings) -> AsyncIterator[Runtime]:
    async with contextlib.AsyncExitStack() as stack:
        yield await Runtime.start(settings, stack)


def secret_of(settings: Settings) -> str:
    async def main() -> str:
        async with running(settings) as rt:
            return await webhooks.secret(rt)

    return asyncio.run(main())


def test_the_configured_secret_is_used_and_no_file_is_made(settings: Settings) -> None:
    configured = replace(settings, webhook_secret="s" * 40)
    assert secret_of(configured) == "s" * 40
    assert not (settings.data_dir / "webhook-secret").exists()


def test_a_generated_secret_is_kept_private_and_the_same_after_a_restart(
    settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.DEBUG):
        first = secret_of(settings)
    path = settings.data_dir / "webhook-secret"
    assert len(first) >= 32 and path.read_text() == first + "\n"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert "generated a webhook signing secret" in caplog.text
    assert first not in caplog.text
    assert secret_of(settings) == first
    assert [p.name for p in settings.data_dir.iterdir() if "webhook" in p.name] == [path.name]


def test_the_server_generates_the_secret_at_start_before_any_webhook(
    settings: Settings, make_client: Any
) -> None:
    path = settings.data_dir / "webhook-secret"
    assert not path.exists()
    make_client()  # the app's lifespan has run: started, no request made
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert len(path.read_text().strip()) >= 32


def test_a_secret_file_too_short_to_be_one_is_an_error_naming_the_file(
    settings: Settings,
) -> None:
    settings.data_dir.mkdir(parents=True)
    (settings.data_dir / "webhook-secret").write_text("short\n")
    with pytest.raises(ValueError, match="webhook-secret: webhook secret shorter than 32"):
        secret_of(settings)


def test_a_short_configured_secret_is_refused_without_showing_it() -> None:
    with pytest.raises(SettingsError) as caught:
        Settings.load({"IMGCDN_WEBHOOK_SECRET": "tooshort-but-private"})
    assert "IMGCDN_WEBHOOK_SECRET" in str(caught.value)
    assert "tooshort" not in str(caught.value)
    assert "tooshort" not in repr(Settings(webhook_secret="tooshort" * 5))


STARTER = """
import asyncio, contextlib, sys
from pathlib import Path
from server import webhooks
from server.runtime import Runtime
from server.settings import Settings

data, go, name = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3]

async def main() -> None:
    async with contextlib.AsyncExitStack() as stack:
        rt = await Runtime.start(Settings(data_dir=data, admin_tokens=(sys.argv[4],)), stack)
        (go.parent / f"ready-{name}").touch()
        while not go.exists():  # a start line: every process asks at the same moment
            await asyncio.sleep(0.001)
        print(await webhooks.secret(rt))

asyncio.run(main())
"""


def test_processes_starting_at_once_all_get_the_one_secret_created_once(tmp_path: Path) -> None:
    data, go = tmp_path / "data", tmp_path / "go"
    count = 4
    starters = [
        subprocess.Popen(
            [sys.executable, "-c", STARTER, str(data), str(go), str(n), TOKEN],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        for n in range(count)
    ]
    try:
        wait_until(lambda: len(list(tmp_path.glob("ready-*"))) == count, seconds=60)
        go.touch()
        results = [p.communicate(timeout=60) for p in starters]
    finally:
        for p in starters:
            p.kill()
            p.wait()
    assert all(p.returncode == 0 for p in starters), [err for _, err in results]
    values = {out.decode().strip() for out, _ in results}
    assert len(values) == 1
    (value,) = values
    assert (data / "webhook-secret").read_text() == value + "\n"
    assert [p.name for p in data.iterdir() if "webhook" in p.name] == ["webhook-secret"]
    # Exactly one process generated it (and said so); the others read its file.
    generated = [err for _, err in results if b"generated a webhook signing secret" in err]
    assert len(generated) == 1


def test_replicas_sharing_redis_agree_on_one_secret_and_keep_it_in_their_files(
    settings: Settings, redis_url: str, redis_server: RedisProcess, tmp_path: Path
) -> None:
    a = replace(settings, redis_url=redis_url, data_dir=tmp_path / "a")
    b = replace(settings, redis_url=redis_url, data_dir=tmp_path / "b")

    async def main() -> tuple[str, str]:
        async with running(a) as ra, running(b) as rb:
            first, second = await asyncio.gather(webhooks.secret(ra), webhooks.secret(rb))
            return first, second

    first, second = asyncio.run(main())
    assert first == second and len(first) >= 32
    assert redis_server.command("GET", "imgcdn:webhook-secret").endswith(f"{first}\r\n".encode())
    for replica in (a, b):
        path = replica.data_dir / "webhook-secret"
        assert path.read_text() == first + "\n"
        assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_a_replica_with_another_secret_in_its_file_takes_the_agreed_one(
    settings: Settings, redis_url: str, tmp_path: Path
) -> None:
    a = replace(settings, redis_url=redis_url, data_dir=tmp_path / "a")
    b = replace(settings, redis_url=redis_url, data_dir=tmp_path / "b")
    agreed = secret_of(a)
    b.data_dir.mkdir(parents=True)
    (b.data_dir / "webhook-secret").write_text("x" * 40 + "\n")
    assert secret_of(b) == agreed
    assert (b.data_dir / "webhook-secret").read_text() == agreed + "\n"


def test_when_redis_loses_its_data_the_secret_stays_the_one_receivers_know(
    settings: Settings, redis_url: str, redis_server: RedisProcess
) -> None:
    shared = replace(settings, redis_url=redis_url)
    known = secret_of(shared)
    assert redis_server.command("FLUSHALL").startswith(b"+OK")
    assert secret_of(shared) == known  # the file's value is offered first, and wins


def test_with_redis_away_no_delivery_is_made_and_it_is_retried(
    settings: Settings, own_redis: RedisProcess
) -> None:
    shared = replace(settings, redis_url=own_redis.url, state_timeout_s=0.5)
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        url = f"http://127.0.0.1:{listener.getsockname()[1]}/hook"

        async def main() -> Attempt:
            async with running(replace(shared, allow_private_sources=True)) as rt:
                own_redis.stop()
                with pytest.raises(StateUnavailable):
                    await webhooks.secret(rt)
                return await deliver(rt, url, b"{}", "job_1")

        attempt = asyncio.run(main())
        assert attempt == Attempt("retry", None, "the webhook signing secret is unavailable")
        listener.setblocking(False)
        with pytest.raises(BlockingIOError):
            listener.accept()
    assert not os.path.exists(settings.data_dir / "webhook-secret")
