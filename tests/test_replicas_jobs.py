"""Three `imgcdn serve` replicas sharing one redis-server and one storage (SPEC §8 "Durability
and scale-out"): a job submitted on A is polled on B and cancelled on C; a replica SIGKILLed
mid-batch has the items it held finished by the others; another key's job is a 404 on every
replica; a Redis SIGKILL and restart mid-batch loses no item. Storage is a shared local data
dir, or the SeaweedFS S3 of tests/test_s3.py with a data dir per replica.
"""

from __future__ import annotations

import base64
import contextlib
import signal
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx2 as httpx
import pytest
import pyvips
import redis
from conftest import IMAGES, TOKEN, free_port, wait_until
from test_s3 import bucket, s3_server  # noqa: F401  # fixtures: the S3 storage variant
from test_server import IMGCDN, env_for

from server.jobs.redis_broker import GROUP, STREAM

PHOTO = base64.b64encode((IMAGES / "photo.jpg").read_bytes()).decode()
ADMIN = {"Authorization": f"Bearer {TOKEN}"}


@dataclass
class Replica:
    name: str
    process: subprocess.Popen[bytes]
    base: str
    log: Path

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=10)


@pytest.fixture(params=["file", "s3"])
def storage(request: pytest.FixtureRequest, tmp_path: Path) -> dict[str, str]:
    """The settings that make the replicas share one storage; IMGCDN_DATA_DIR "" means
    each replica has a data dir of its own."""
    if request.param == "file":
        return {"IMGCDN_DATA_DIR": str(tmp_path / "shared")}
    endpoint, _ = request.getfixturevalue("s3_server")
    name = request.getfixturevalue("bucket")  # also puts the S3 credentials in os.environ
    return {"IMGCDN_DATA_DIR": "", "IMGCDN_STORAGE": f"s3://{name}/imgcdn",
            "IMGCDN_S3_ENDPOINT": endpoint}  # fmt: skip


@contextlib.contextmanager
def replicas(
    tmp_path: Path, redis_url: str, storage: dict[str, str], clean_log: bool = True
) -> Iterator[list[Replica]]:
    """Replicas a, b and c, each running one item at a time, once all answer /readyz.
    `clean_log`: no traceback in any replica's log at the end."""
    started: list[Replica] = []
    try:
        for name in ("a", "b", "c"):
            workdir = tmp_path / name
            workdir.mkdir()
            port = free_port()
            env = env_for(Path(storage["IMGCDN_DATA_DIR"] or workdir / "data"))
            env.update({k: v for k, v in storage.items() if k != "IMGCDN_DATA_DIR"})
            env.update(IMGCDN_REDIS_URL=redis_url, IMGCDN_ADMIN_TOKENS=TOKEN)
            env.update(IMGCDN_JOB_CONCURRENCY="1", IMGCDN_STATE_TIMEOUT_S="1")
            log = workdir / "serve.log"
            with log.open("wb") as out:
                process = subprocess.Popen(
                    [str(IMGCDN), "serve", "--port", str(port)],
                    env=env, cwd=workdir, stdout=out, stderr=out,
                )  # fmt: skip
            started.append(Replica(name, process, f"http://127.0.0.1:{port}", log))
        for replica in started:
            wait_until(lambda r=replica: ready(r), 30)
        yield started
    finally:
        for replica in started:
            if replica.process.poll() is None:
                replica.kill()
    for replica in started if clean_log else ():
        assert "Traceback" not in replica.log.read_text(errors="replace"), replica.name


def ready(replica: Replica) -> bool:
    if replica.process.poll() is not None:
        raise AssertionError(f"{replica.name} exited:\n{replica.log.read_text()}")
    try:
        return httpx.get(f"{replica.base}/readyz", timeout=2).status_code == 200
    except httpx.TransportError:
        return False


def new_key(base: str, name: str) -> dict[str, str]:
    # A rate that polling every 20 ms never reaches.
    body = {"name": name, "rate_per_s": 10_000, "burst": 10_000}
    r = httpx.post(f"{base}/v1/keys", json=body, headers=ADMIN, timeout=10)
    assert r.status_code in (200, 201), r.text
    return {"Authorization": f"Bearer {r.json()['key']}"}


def item(i: int) -> dict[str, Any]:
    # Distinct, and slow enough (a wide blur) that a kill or a cancel lands mid-batch.
    return {"image": {"base64": PHOTO},
            "ops": [{"op": "blur", "params": {"sigma": 20 + i % 5}},
                    {"op": "resize", "params": {"width": 300 + i}}]}  # fmt: skip


def submit(base: str, auth: dict[str, str], count: int) -> str:
    body = {"items": [item(i) for i in range(count)]}
    r = httpx.post(f"{base}/v1/image/batch/submit", json=body, headers=auth, timeout=30)
    assert r.status_code == 202, r.text
    return str(r.json()["id"])


def status(base: str, auth: dict[str, str], job_id: str) -> dict[str, Any]:
    r = httpx.get(f"{base}/v1/image/batch/status/{job_id}", headers=auth, timeout=10)
    assert r.status_code == 200, r.text
    return dict(r.json())


def reached(base: str, auth: dict[str, str], job_id: str, field: str, value: Any) -> bool:
    """For polling: whether the status has `field` == value (or >= a number); a 503 while
    Redis restarts is just "not yet"."""
    r = httpx.get(f"{base}/v1/image/batch/status/{job_id}", headers=auth, timeout=10)
    if r.status_code == 503:
        return False
    assert r.status_code == 200, r.text
    got = r.json().get(field)
    return got is not None and (got >= value if isinstance(value, int) else got == value)


def held_by(redis_url: str, pid: int) -> int:
    """Entries the receiver of process `pid` has read and not acked (consumer names are
    `<host>-<pid>-<...>`)."""
    with redis.Redis.from_url(redis_url) as client:
        summary = client.xpending(STREAM, GROUP)
    return sum(
        int(c["pending"]) for c in summary["consumers"] or []
        if c["name"].decode().split("-")[-2] == str(pid)
    )  # fmt: skip


def test_a_job_is_polled_and_cancelled_on_any_replica_and_hidden_from_other_keys(
    tmp_path, redis_url, storage
):
    with replicas(tmp_path, redis_url, storage) as (a, b, c):
        owner, stranger = new_key(a.base, "owner"), new_key(b.base, "stranger")
        job_id = submit(a.base, owner, 60)
        wait_until(lambda: reached(b.base, owner, job_id, "done", 1), 60)
        r = httpx.post(f"{c.base}/v1/image/batch/cancel/{job_id}", headers=owner, timeout=10)
        assert r.status_code == 200 and r.json() == {"id": job_id, "status": "cancelled"}
        for replica in (a, b, c):
            for path in ("status", "cancel"):
                method = "GET" if path == "status" else "POST"
                url = f"{replica.base}/v1/image/batch/{path}/{job_id}"
                r = httpx.request(method, url, headers=stranger, timeout=10)
                assert r.status_code == 404, (replica.name, path, r.text)
        wait_until(lambda: status(a.base, owner, job_id).get("finished_at") is not None, 60)
        final = status(b.base, owner, job_id)
        states = [result["status"] for result in final["results"]]
        assert final["status"] == "cancelled" and set(states) <= {"succeeded", "cancelled"}
        assert states.count("succeeded") == final["done"] >= 1
        assert states.count("cancelled") >= 60 - 3 - final["done"]  # at most 3 were running
        assert status(c.base, owner, job_id) == final


def test_the_items_of_a_replica_killed_mid_batch_are_finished_by_the_others(
    tmp_path, redis_url, storage
):
    count = 12
    with replicas(tmp_path, redis_url, storage) as (a, b, c):
        owner = new_key(a.base, "owner")
        job_id = submit(a.base, owner, count)
        wait_until(lambda: held_by(redis_url, b.process.pid) >= 1, 60)
        b.kill()
        assert status(c.base, owner, job_id)["status"] != "completed"
        # Taken over once B's liveness key lapses (10 s), well before the idle reclaim (60 s).
        wait_until(lambda: held_by(redis_url, b.process.pid) == 0, 20)
        wait_until(lambda: reached(c.base, owner, job_id, "status", "completed"), 45)
        final = status(a.base, owner, job_id)
        assert (final["done"], final["failed"]) == (count, 0)
        for i, result in enumerate(final["results"]):
            served = httpx.get(result["image_url"], timeout=10)
            assert served.status_code == 200, result
            assert pyvips.Image.new_from_buffer(served.content, "").width == 300 + i


def test_a_redis_sigkill_and_restart_mid_batch_loses_no_item(tmp_path, own_redis):
    count = 12
    storage = {"IMGCDN_DATA_DIR": str(tmp_path / "shared")}
    # An item rendered while Redis is down has its outcome recorded once Redis is back (the
    # engine retries finish_item for up to RECORD_WAIT_S), not after the 60 s lease; no
    # replica logs a traceback for it.
    with replicas(tmp_path, own_redis.url, storage) as (a, b, c):
        owner = new_key(a.base, "owner")
        job_id = submit(a.base, owner, count)
        wait_until(lambda: reached(b.base, owner, job_id, "done", 2), 60)
        own_redis.kill()
        r = httpx.get(f"{c.base}/v1/image/batch/status/{job_id}", headers=owner, timeout=10)
        assert r.status_code == 503 and "Retry-After" in r.headers
        own_redis.start()
        wait_until(lambda: reached(c.base, owner, job_id, "status", "completed"), 120)
        final = status(a.base, owner, job_id)
        assert (final["done"], final["failed"]) == (count, 0)
        assert [result["status"] for result in final["results"]] == ["succeeded"] * count
