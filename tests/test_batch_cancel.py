"""Cancel and progress of a batch, held still by a source that answers only when the test
lets it: item 0 runs (fetching from the gate) while the others wait their turn."""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from typing import Any

import anyio
import pytest
from conftest import AUTH, IMAGES, error_body, serving_in_thread, wait_until
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.testclient import TestClient
from test_batch import ended, resize, status, submit

from server.jobs import engine

PHOTO = (IMAGES / "photo.jpg").read_bytes()


class Gate:
    def __init__(self) -> None:
        self.open = threading.Event()
        self.asked = threading.Event()

    async def image(self, request: Request) -> Response:
        self.asked.set()
        await anyio.to_thread.run_sync(lambda: self.open.wait(30))
        return Response(PHOTO, media_type="image/jpeg")


@pytest.fixture
def gate() -> Iterator[tuple[Gate, str]]:
    held = Gate()
    app = Starlette(routes=[Route("/photo.jpg", held.image)])
    with serving_in_thread(app) as base:
        yield held, f"{base}/photo.jpg"
        held.open.set()


@pytest.fixture
def one_at_a_time(make_client: Any, monkeypatch: pytest.MonkeyPatch) -> TestClient:
    monkeypatch.setattr(engine, "REFRESH_S", 0.05)
    client: TestClient = make_client(job_concurrency=1, allow_private_sources=True)
    return client


def test_cancel_drops_pending_items_lets_the_running_one_finish_and_is_idempotent(
    one_at_a_time: TestClient, gate: tuple[Gate, str]
) -> None:
    client, (held, url) = one_at_a_time, gate
    job = submit(client, {"items": [resize(50, url)] + [resize(60)] * 5}).json()
    wait_until(held.asked.is_set)
    running = status(client, job["id"])
    assert running["status"] == "running"
    assert [r["status"] for r in running["results"]] == ["running"] + ["pending"] * 5

    r = client.post(f"/v1/image/batch/cancel/{job['id']}", json={"job_id": job["id"]}, headers=AUTH)
    assert r.status_code == 200, r.text
    assert r.json() == {"id": job["id"], "status": "cancelled"}
    again = client.post(f"/v1/image/batch/cancel/{job['id']}", headers=AUTH)
    assert again.json() == {"id": job["id"], "status": "cancelled"}
    mid = status(client, job["id"])
    assert "finished_at" not in mid  # item 0 still runs
    assert [r["status"] for r in mid["results"]] == ["running"] + ["cancelled"] * 5

    held.open.set()
    final = ended(client, job["id"])
    assert (final["status"], final["done"], final["cancelled"]) == ("cancelled", 1, 5)
    assert final["results"][0]["status"] == "succeeded"


def test_cancel_of_an_ended_job_answers_its_status_unchanged(client: TestClient) -> None:
    job = submit(client, {"items": [resize(40)]}).json()
    ended(client, job["id"])
    r = client.post(f"/v1/image/batch/cancel/{job['id']}", headers=AUTH)
    assert r.json() == {"id": job["id"], "status": "completed"}


def test_a_cancel_body_naming_another_job_is_400(client: TestClient) -> None:
    job = submit(client, {"items": [resize(40)]}).json()
    r = client.post(f"/v1/image/batch/cancel/{job['id']}", json={"job_id": "job_x"}, headers=AUTH)
    assert error_body(r, 400)["param"] == "job_id"


def test_progress_shows_in_status_and_in_metrics_as_items_finish(
    one_at_a_time: TestClient, gate: tuple[Gate, str]
) -> None:
    client, (held, url) = one_at_a_time, gate

    def value(series: str) -> float:
        text = client.get("/metrics").text
        found = re.search(rf"^{re.escape(series)} (\S+)$", text, re.M)
        return float(found.group(1)) if found else 0.0

    def gauge(state: str) -> float:
        return value(f'imgcdn_job_items{{state="{state}"}}')

    # Counters are the process's, over every test: compare with the counts before.
    finished = 'imgcdn_job_item_seconds_count{status="succeeded"}'
    before = value(finished), value("imgcdn_job_item_wait_seconds_count")
    job = submit(client, {"items": [resize(50, url), resize(70), resize(80)]}).json()
    wait_until(held.asked.is_set)

    wait_until(lambda: gauge("pending") == 2 and gauge("running") == 1)
    assert status(client, job["id"])["done"] == 0
    held.open.set()
    final = ended(client, job["id"])
    assert (final["done"], final["failed"]) == (3, 0)
    wait_until(lambda: gauge("succeeded") == 3 and gauge("pending") == 0)
    after = value(finished), value("imgcdn_job_item_wait_seconds_count")
    assert (after[0] - before[0], after[1] - before[1]) == (3, 3)
    wait_until(lambda: value("imgcdn_job_queue_depth") == 0)
