"""kill -9 mid-batch (SPEC §8 "durable, embedded"): `imgcdn serve --workers 2` on a data
dir, a batch of 20 items, SIGKILL of the whole process group once some have succeeded, a
restart on the same data dir: the batch completes with every item succeeded, none lost."""

from __future__ import annotations

import base64
import contextlib
import os
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx2 as httpx
import pyvips
from conftest import IMAGES, free_port, wait_until
from test_server import IMGCDN, env_for

PHOTO = base64.b64encode((IMAGES / "photo.jpg").read_bytes()).decode()
COUNT = 20


@contextlib.contextmanager
def serve(workdir: Path, port: int, log: str) -> Iterator[subprocess.Popen[bytes]]:
    """`imgcdn serve --workers 2` in a session of its own, so one killpg takes every
    process (uvicorn's supervisor and both workers) at once, as a crash would."""
    with (workdir / log).open("wb") as err:
        process = subprocess.Popen(
            [str(IMGCDN), "serve", "--port", str(port), "--workers", "2"],
            env=env_for(workdir / "data", IMGCDN_JOB_CONCURRENCY="1"),
            cwd=workdir,
            stdout=err,
            stderr=err,
            start_new_session=True,
        )
    try:
        yield process
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)


def up(base: str) -> bool:
    try:
        return httpx.get(f"{base}/readyz", timeout=2).status_code == 200
    except httpx.TransportError:
        return False


def item(i: int) -> dict[str, Any]:
    # Distinct and slow enough (a wide blur on a 800 x 600 photo) that the kill lands mid-batch.
    return {
        "image": {"base64": PHOTO},
        "ops": [
            {"op": "blur", "params": {"sigma": 20 + i}},
            {"op": "resize", "params": {"width": 400 + i}},
        ],
    }


def test_a_batch_survives_kill_9_of_every_process_and_a_restart_with_no_item_lost(
    tmp_path: Path,
) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    with serve(tmp_path, port, "first.log") as first:
        wait_until(lambda: up(base), 30)
        auth = {
            "Authorization": f"Bearer {(tmp_path / 'data' / 'admin-token').read_text().strip()}"
        }
        r = httpx.post(
            f"{base}/v1/image/batch/submit",
            json={"items": [item(i) for i in range(COUNT)]},
            headers=auth,
            timeout=30,
        )
        assert r.status_code == 202, r.text
        job_id = r.json()["id"]
        seen: dict[str, Any] = {}

        def some_done() -> bool:
            seen.update(httpx.get(f"{base}/v1/image/batch/status/{job_id}", headers=auth).json())
            return int(seen["done"]) >= 3

        wait_until(some_done, 60)
        os.killpg(first.pid, signal.SIGKILL)
        first.wait(timeout=10)
    assert seen["done"] < COUNT, "the batch ended before the kill: make the items slower"
    killed_at = seen["done"]

    with serve(tmp_path, port, "second.log"):
        wait_until(lambda: up(base), 30)
        final: dict[str, Any] = {}

        def completed() -> bool:
            final.update(httpx.get(f"{base}/v1/image/batch/status/{job_id}", headers=auth).json())
            return final["status"] == "completed"

        wait_until(completed, 120)
        assert (final["done"], final["failed"], final["count"]) == (COUNT, 0, COUNT)
        assert [r["status"] for r in final["results"]] == ["succeeded"] * COUNT
        for i, result in enumerate(final["results"]):
            served = httpx.get(result["image_url"], timeout=10)
            assert served.status_code == 200
            assert pyvips.Image.new_from_buffer(served.content, "").width == 400 + i
    log = (tmp_path / "second.log").read_text()
    assert killed_at < COUNT
    assert "Traceback" not in log, log
