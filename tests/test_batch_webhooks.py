"""A batch's webhook, end to end over the real app: the job ends, its status JSON is
POSTed signed to a real receiver on 127.0.0.1, retried through the queue's `not_before`
on failure, and its state shows in the job's status."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import orjson
import pytest
from conftest import AUTH, error_body, wait_until
from starlette.testclient import TestClient
from test_batch import ended, resize, status, submit
from webhook_receiver import Receiver, receiving

from server import webhooks
from server.jobs import notify
from server.jobs.engine import Engine
from server.jobs.model import Job

SECRET = "batch-webhook-secret-0123456789abcdef"


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with receiving() as r:
        yield r


@pytest.fixture
def hooked(make_client: Any) -> TestClient:
    client: TestClient = make_client(allow_private_sources=True, webhook_secret=SECRET)
    return client


def delivered(client: TestClient, job_id: str) -> dict[str, Any]:
    seen: dict[str, Any] = {}

    def settled() -> bool:
        seen.update(status(client, job_id))
        return seen.get("webhook", {}).get("status") in ("delivered", "failed", "refused")

    wait_until(settled, 30)
    return seen


def test_an_ended_job_posts_its_status_signed_once(hooked: TestClient, receiver: Receiver) -> None:
    url = f"{receiver.base}/hook"
    job = submit(hooked, {"items": [resize(30), resize(40)], "webhook_url": url}).json()
    final = delivered(hooked, job["id"])
    assert final["webhook"] == {"url": url, "status": "delivered", "attempts": 1}
    assert len(receiver.seen) == 1
    path, headers, body = receiver.seen[0]
    assert path == "/hook"
    sent = orjson.loads(body)
    assert (sent["id"], sent["status"], sent["done"]) == (job["id"], "completed", 2)
    assert [r["status"] for r in sent["results"]] == ["succeeded", "succeeded"]
    assert headers["imgcdn-delivery"] == job["id"]
    t = int(headers["imgcdn-signature"].split(",")[0].removeprefix("t="))
    assert headers["imgcdn-signature"] == webhooks.sign(SECRET, t, body)


def test_a_failing_receiver_is_retried_later_through_the_queue(
    hooked: TestClient, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(webhooks, "SCHEDULE", (0.5, 0.5))
    receiver.plan = [500, 503]
    job = submit(hooked, {"items": [resize(30)], "webhook_url": f"{receiver.base}/hook"}).json()
    wait_until(lambda: len(receiver.seen) >= 1)
    first = time.monotonic()
    middle = status(hooked, job["id"])["webhook"]
    assert middle["status"] in ("retrying", "delivered")
    final = delivered(hooked, job["id"])
    assert (final["webhook"]["status"], final["webhook"]["attempts"]) == ("delivered", 3)
    assert len(receiver.seen) == 3
    assert time.monotonic() - first >= 2 * 0.5 * 0.8 - 0.05  # waited, with -20 % jitter


def test_a_receiver_that_never_accepts_ends_failed_after_the_schedule(
    hooked: TestClient, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(webhooks, "SCHEDULE", (0.1,))
    receiver.plan = [500, 500, 500]
    job = submit(hooked, {"items": [resize(30)], "webhook_url": f"{receiver.base}/hook"}).json()
    final = delivered(hooked, job["id"])
    assert (final["webhook"]["status"], final["webhook"]["attempts"]) == ("failed", 2)
    assert final["webhook"]["error"]


def test_a_cancelled_job_posts_its_status_too(hooked: TestClient, receiver: Receiver) -> None:
    job = submit(hooked, {"items": [resize(30)], "webhook_url": f"{receiver.base}/hook"}).json()
    hooked.post(f"/v1/image/batch/cancel/{job['id']}", headers=AUTH)
    final = delivered(hooked, job["id"])
    assert final["webhook"]["status"] == "delivered"
    sent = [orjson.loads(body) for _, _, body in receiver.seen]
    assert sent[-1]["id"] == job["id"] and sent[-1]["status"] in ("cancelled", "completed")


def test_a_webhook_url_the_guard_refuses_is_400_at_submit(make_client: Any) -> None:
    client = make_client(webhook_secret=SECRET)
    r = submit(client, {"items": [resize(30)], "webhook_url": "http://127.0.0.1:9/hook"})
    assert (error_body(r, 400)["code"], error_body(r, 400)["param"]) == (
        "webhook_forbidden",
        "webhook_url",
    )
    r = submit(client, {"items": [resize(30)], "webhook_url": "ftp://example.com/x"})
    assert error_body(r, 400)["param"] == "webhook_url"


def test_without_a_webhook_the_status_has_none(client: TestClient) -> None:
    final = ended(client, submit(client, {"items": [resize(30)]}).json()["id"])
    assert "webhook" not in final


def test_a_webhook_whose_kick_died_with_its_process_is_sent_by_the_watchdog(
    hooked: TestClient, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The process that records a job's end dies before it queues the webhook: here the
    # kick raises instead, which leaves the same state (job ended, webhook pending, no
    # delivery message). The job's watchdog, queued at submit, makes the attempt.
    monkeypatch.setattr(notify, "WATCH_S", 0.3)
    monkeypatch.setattr(notify, "GRACE_S", 0.2)
    lost: list[str] = []
    real_ended = Engine.ended

    async def dies_once(self: Engine, job: Job) -> None:
        if not lost:
            lost.append(job.id)
            raise RuntimeError("the process died between the job's end and its kick")
        await real_ended(self, job)

    monkeypatch.setattr(Engine, "ended", dies_once)
    job = submit(hooked, {"items": [resize(30)], "webhook_url": f"{receiver.base}/hook"}).json()
    final = delivered(hooked, job["id"])
    assert lost == [job["id"]]
    assert (final["webhook"]["status"], final["webhook"]["attempts"]) == ("delivered", 1)
    assert len(receiver.seen) == 1
    assert orjson.loads(receiver.seen[0][2])["status"] == "completed"
