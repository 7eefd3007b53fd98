"""Three `imgcdn serve` processes sharing one data dir and one real redis-server, as replicas
behind a load balancer: a key's burst and daily quota hold exactly across them, an
Idempotency-Key answered by one is replayed by another, and a Redis killed (SIGKILL) and
restarted on its folder brings the limits back where they were."""

from __future__ import annotations

import base64
import contextlib
import subprocess
import threading
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx2 as httpx
import pytest
from conftest import AUTH, IMAGES, TOKEN, error_body, free_port, wait_until
from redisproc import RedisProcess
from test_server import IMGCDN, env_for

P3 = base64.b64encode((IMAGES / "p3.jpg").read_bytes()).decode()  # 400 x 300
RESIZE = {"image": {"base64": P3}, "width": 40}


@contextlib.contextmanager
def replicas(workdir: Path, count: int, **settings: str) -> Iterator[list[str]]:
    """`count` `imgcdn serve` processes on one data dir, each on its own port; their bases."""
    processes: list[tuple[subprocess.Popen[bytes], Path]] = []
    bases = []
    try:
        for n in range(count):
            port, log = free_port(), workdir / f"replica-{n}.log"
            with log.open("wb") as out:
                command = [str(IMGCDN), "serve", "--port", str(port)]
                env = env_for(workdir / "data", **settings)
                processes.append((subprocess.Popen(command, env=env, stdout=out, stderr=out), log))
            bases.append(f"http://127.0.0.1:{port}")

        def up(base: str, process: subprocess.Popen[bytes], log: Path) -> bool:
            assert process.poll() is None, log.read_text(errors="replace")
            with contextlib.suppress(httpx.TransportError):
                return httpx.get(f"{base}/readyz", timeout=2).status_code == 200
            return False

        for base, (process, log) in zip(bases, processes, strict=True):
            wait_until(lambda b=base, p=process, lg=log: up(b, p, lg), seconds=30)
        yield bases
    finally:
        for process, _ in processes:
            process.kill()
            process.wait(timeout=10)


@pytest.fixture(scope="module")
def redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisProcess]:
    """This module's own redis-server: the last test kills and restarts it."""
    server = RedisProcess(tmp_path_factory.mktemp("replicas-redis"))
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The replicas' logs, and their one data dir (`data`)."""
    return tmp_path_factory.mktemp("replicas")


@pytest.fixture(scope="module")
def three(workdir: Path, redis: RedisProcess) -> Iterator[list[str]]:
    settings = {
        "IMGCDN_REDIS_URL": redis.url,
        "IMGCDN_ADMIN_TOKENS": TOKEN,
        "IMGCDN_STATE_TIMEOUT_S": "0.5",
    }
    with replicas(workdir, 3, **settings) as bases:
        yield bases


def new_key(base: str, **fields: Any) -> dict[str, str]:
    r = httpx.post(f"{base}/v1/keys", json={"name": "app", **fields}, headers=AUTH)
    assert r.status_code == 201, r.text
    return {"X-API-KEY": r.json()["key"]}


def key_id(key: dict[str, str]) -> str:
    return key["X-API-KEY"].split("_")[1]


def at_once(bases: list[str], key: dict[str, str], count: int) -> list[tuple[int, str]]:
    """`count` GET /v1/image/list, spread evenly over `bases` and released together; each
    answer's status and the replica that gave it."""
    gate = threading.Barrier(count)
    fresh = httpx.Limits(max_keepalive_connections=0)

    def one(n: int) -> tuple[int, str]:
        base = bases[n % len(bases)]
        with httpx.Client(base_url=base, limits=fresh, timeout=30) as client:
            gate.wait(timeout=30)
            return client.get("/v1/image/list", headers=key).status_code, base

    with ThreadPoolExecutor(count) as threads:
        return list(threads.map(one, range(count)))


def test_a_burst_of_10_admits_exactly_10_of_30_concurrent_requests_across_three(
    three, redis, workdir
):
    key = new_key(three[0], rate_per_s=0.001, burst=10)
    answers = at_once(three, key, 30)
    assert Counter(status for status, _ in answers) == Counter({200: 10, 429: 20})
    assert len({base for _, base in answers}) == 3
    # Held in Redis, not in the shared data dir's SQLite file (which would be exact too).
    assert redis.command("EXISTS", f"imgcdn:rate:{key_id(key)}") == b":1\r\n"
    assert (workdir / "data" / "docs").is_dir()  # the one data dir the keys live in
    assert not list((workdir / "data").glob("state.sqlite3*"))
    # The replicas agree on where the key stands.
    remaining = {httpx.get(f"{b}/v1/image/list", headers=key).status_code for b in three}
    assert remaining == {429}


def test_a_daily_quota_is_exact_across_three(three):
    key = new_key(three[1], rate_per_s=10_000, burst=10_000, daily_quota=12)
    answers = at_once(three, key, 36)
    assert Counter(status for status, _ in answers) == Counter({200: 12, 429: 24})
    r = httpx.get(f"{three[2]}/v1/image/list", headers=key)
    assert error_body(r, 429)["code"] == "quota_exceeded"
    assert r.headers["ratelimit-limit"] == "12" and r.headers["ratelimit-remaining"] == "0"


def test_an_idempotency_key_answered_by_one_replica_is_replayed_by_another(three):
    key = {**new_key(three[0]), "Idempotency-Key": "order-1"}
    first = httpx.post(f"{three[0]}/v1/image/resize", json=RESIZE, headers=key, timeout=30)
    assert first.status_code == 200, first.text
    again = httpx.post(f"{three[1]}/v1/image/resize", json=RESIZE, headers=key, timeout=30)
    assert again.status_code == 200 and again.headers["idempotent-replayed"] == "true"
    assert again.content == first.content
    other = httpx.post(f"{three[2]}/v1/image/resize", json={**RESIZE, "width": 41}, headers=key)
    assert error_body(other, 422)["code"] == "idempotency_key_reused"


def test_limits_survive_a_redis_killed_and_restarted_and_work_again(three, redis):
    key = new_key(three[0], rate_per_s=0.001, burst=5)
    statuses = [httpx.get(f"{b}/v1/image/list", headers=key).status_code for b in three]
    assert statuses == [200, 200, 200]
    redis.kill()
    try:
        for base in three:  # refused at once (nothing listens): a quick 503, not a hang
            r = httpx.get(f"{base}/v1/image/list", headers=key, timeout=10)
            assert error_body(r, 503)["code"] == "state_unavailable"
            assert httpx.get(f"{base}/readyz").status_code == 503
    finally:
        redis.start()  # the same port and folder: its append-only file brings the state back
    for base in three:
        wait_until(lambda b=base: httpx.get(f"{b}/readyz").status_code == 200, seconds=20)
    # Two of the five were left before the crash, and still are.
    answers = [httpx.get(f"{b}/v1/image/list", headers=key).status_code for b in three]
    assert answers == [200, 200, 429]
