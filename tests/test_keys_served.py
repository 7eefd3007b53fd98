"""Keys on real processes: `imgcdn keys ...` against `imgcdn serve`, and limits that stay
exact when several processes share the data dir (SPEC §6: "Limits and quotas hold across
all workers of a server")."""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import os
import signal
import subprocess
import sys
import threading
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx2 as httpx
import pytest
from conftest import TOKEN, free_port, wait_until
from test_server import IMGCDN, env_for, serving

from server.state.base import Policy
from server.state.local import SqliteState

TESTS = Path(__file__).parent


def keys_cli(served: Any, *args: str) -> subprocess.CompletedProcess[str]:
    env = env_for(served.data_dir)  # the CLI finds the generated admin token there
    return subprocess.run(
        [str(IMGCDN), "keys", *args, "--url", served.base],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )


def test_keys_create_list_disable_delete_from_the_command_line(tmp_path):
    with serving(tmp_path) as served:
        made = keys_cli(
            served,
            "create",
            "acme app",
            "--rate-per-s",
            "0.5",
            "--burst",
            "3",
            "--daily-quota",
            "100",
            "--expires-at",
            "2031-01-01T00:00:00Z",
            "--scope",
            "image.read",
            "--scope",
            "image.process",
            "--prefix",
            "acme/",
        )
        assert made.returncode == 0, made.stderr
        key = made.stdout.strip()
        assert key.startswith("ik_") and "not shown again" in made.stderr
        key_id = key[3:15]
        admin = {"Authorization": f"Bearer {served.token}"}
        shown = httpx.get(f"{served.base}/v1/keys/{key_id}", headers=admin).json()
        assert shown["name"] == "acme app" and shown["prefix"] == "acme/"
        assert shown["scopes"] == ["image.process", "image.read"]
        assert (shown["rate_per_s"], shown["burst"], shown["daily_quota"]) == (0.5, 3, 100)
        assert shown["expires_at"] == "2031-01-01T00:00:00Z"

        listed = keys_cli(served, "list")
        assert listed.returncode == 0, listed.stderr
        row = next(line for line in listed.stdout.splitlines() if line.startswith(key_id))
        assert row.split("\t")[:2] == [key_id, "active"] and "acme app" in row
        assert key[16:] not in listed.stdout  # the secret

        assert keys_cli(served, "disable", key_id).stdout.strip() == f"{key_id}: disabled"
        assert "\tdisabled\t" in keys_cli(served, "list").stdout
        assert keys_cli(served, "delete", key_id).returncode == 0
        assert key_id not in keys_cli(served, "list").stdout
        assert key[16:] not in served.log()


def test_keys_cli_errors_are_one_line_naming_the_problem(tmp_path):
    with serving(tmp_path) as served:
        bad = keys_cli(served, "create", "x", "--scope", "image.fly")
        assert bad.returncode == 1 and "image.fly" in bad.stderr and "Traceback" not in bad.stderr
        missing = keys_cli(served, "disable", "abcdefghijkl")
        assert missing.returncode == 1 and "404" in missing.stderr


def _charge_many(path: str, policy: Policy, tries: int, barrier: Any) -> int:
    async def run() -> int:
        state = SqliteState(Path(path), 10.0)
        barrier.wait()
        admitted = 0
        for _ in range(tries):
            admitted += (await state.charge("shared", policy)).allowed
        await state.close()
        return admitted

    return asyncio.run(run())


@pytest.mark.parametrize(
    ("policy", "expected"),
    [(Policy(0.001, 100, None), 100), (Policy(100_000, 1_000_000, 250), 250)],
    ids=["burst", "daily-quota"],
)
def test_four_processes_on_one_state_file_admit_exactly_the_limit(tmp_path, policy, expected):
    context = multiprocessing.get_context("spawn")
    with context.Manager() as manager:
        barrier = manager.Barrier(4)
        with context.Pool(4) as pool:
            args = [(str(tmp_path / "state.sqlite3"), policy, 300, barrier)] * 4
            admitted = pool.starmap(_charge_many, args)
    assert sum(admitted) == expected
    assert sum(1 for n in admitted if n) >= 2  # the processes really did share the work


def test_workers_opening_a_new_state_file_together_all_get_it(tmp_path):
    # SQLite answers the race to put a new file in WAL mode "database is locked" at once,
    # without its busy handler: before the retry, some worker failed within 12 rounds.
    context = multiprocessing.get_context("spawn")
    with context.Manager() as manager, context.Pool(6) as pool:
        for round_ in range(12):
            barrier = manager.Barrier(6)
            args = [
                (str(tmp_path / f"state-{round_}.sqlite3"), Policy(1e5, 10**6, None), 5, barrier)
            ]
            assert pool.starmap(_charge_many, args * 6) == [5] * 6


@contextlib.contextmanager
def two_workers(tmp_path: Path) -> Iterator[str]:
    """The real app with the auth probe (tests/keyed.py) under uvicorn --workers 2."""
    port = free_port()
    log = tmp_path / "server.log"
    env = env_for(tmp_path / "data", IMGCDN_ADMIN_TOKENS=TOKEN)
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "keyed:create_app_from_env", "--factory",
             "--app-dir", str(TESTS), "--workers", "2", "--port", str(port),
             "--log-level", "warning"],
            env=env, stdout=out, stderr=out,
        )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:

        def up() -> bool:
            assert process.poll() is None, log.read_text()
            with contextlib.suppress(httpx.TransportError):
                return httpx.get(f"{base}/healthz", timeout=2).status_code == 200
            return False

        wait_until(up, seconds=30)
        yield base
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


def hammer(base: str, key: str, count: int) -> tuple[Counter[int], set[int]]:
    # No keep-alive: a new connection each time, so both workers take their share.
    fresh = httpx.Limits(max_keepalive_connections=0)
    with httpx.Client(base_url=base, limits=fresh, timeout=30) as client:

        def one(_: int) -> tuple[int, int | None]:
            r = client.get("/probe/image.process", headers={"X-API-KEY": key})
            return r.status_code, r.json().get("pid") if r.status_code == 200 else None

        with ThreadPoolExecutor(8) as threads:
            answers = list(threads.map(one, range(count)))
    return Counter(status for status, _ in answers), {pid for _, pid in answers if pid}


def test_two_workers_admit_exactly_the_burst_and_the_daily_quota(tmp_path):
    with two_workers(tmp_path) as base:
        admin = {"Authorization": f"Bearer {TOKEN}"}
        burst = httpx.post(
            f"{base}/v1/keys", json={"name": "b", "rate_per_s": 0.001, "burst": 40}, headers=admin
        ).json()
        quota = httpx.post(
            f"{base}/v1/keys",
            json={"name": "q", "rate_per_s": 10_000, "burst": 10_000, "daily_quota": 30},
            headers=admin,
        ).json()
        statuses, pids = hammer(base, burst["key"], 200)
        assert statuses == Counter({200: 40, 429: 160})
        statuses, more_pids = hammer(base, quota["key"], 120)
        assert statuses == Counter({200: 30, 429: 90})
        assert len(pids | more_pids) == 2, "both workers should have answered"
        assert os.getpid() not in pids


def test_a_worker_killed_while_it_holds_the_state_lock_does_not_block_the_others(tmp_path):
    path = tmp_path / "state.sqlite3"
    holder = subprocess.Popen(
        [sys.executable, "-c",
         "import fcntl, os, sys, time\n"
         f"fd = os.open({str(path) + '.lock'!r}, os.O_RDWR | os.O_CREAT)\n"
         "fcntl.flock(fd, fcntl.LOCK_EX)\n"
         "print('held', flush=True)\n"
         "time.sleep(120)\n"],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        done: list[int] = []

        def charge() -> None:
            done.append(_charge_many(str(path), Policy(1e5, 10**6, None), 3, threading.Barrier(1)))

        waiter = threading.Thread(target=charge, daemon=True)
        waiter.start()
        waiter.join(timeout=0.5)
        assert done == []  # it waits its turn behind the holder
        holder.send_signal(signal.SIGKILL)
        waiter.join(timeout=30)
        assert done == [3]  # the kernel let go of the dead holder's lock
    finally:
        holder.kill()
        holder.wait(timeout=10)
        if holder.stdout is not None:
            holder.stdout.close()
