"""deliver_webhook's work: post an ended job's status to its webhook_url, once per
message, and record how it went (SPEC §8). The signing, the SSRF guard, the deadline and
the retry schedule are server/webhooks.py's; this module keeps the job's webhook state and
queues the next attempt with the `not_before` label, so retries survive a restart.

A job with a webhook also has a watchdog: a deliver_webhook message marked `watch`, queued
at submit for WATCH_S later and again every WATCH_S until the webhook has settled. The
kick that follows a job's end (or a retry's kick) is lost if its process dies between
recording the end and queueing the kick; the watchdog then finds the job ended, the
webhook still due and nothing sent for GRACE_S, and makes the attempt itself.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import orjson

from server import webhooks
from server.jobs.batch import status_json
from server.jobs.model import WebhookState

if TYPE_CHECKING:
    from server.jobs.engine import Engine
    from server.runtime import Runtime

SETTLED = frozenset({"delivered", "failed", "refused"})
WATCH_S = 30.0  # how often the watchdog looks (a seam tests shorten)
GRACE_S = 10.0  # how late a due attempt must be before the watchdog makes it itself


async def deliver(rt: Runtime, engine: Engine, job_id: str, watch: bool = False) -> None:
    job = await engine.store.get(job_id, None)
    if job is None or job.webhook is None or job.webhook.status in SETTLED:
        return  # swept, no webhook, or an earlier run of this message settled it
    if watch:
        now = time.time()
        if now - job.created_at > rt.settings.job_keep_s:
            return  # a job that never ended (its submit died half-way) is watched no longer
        due = job.finished_at if job.webhook.status == "pending" else job.webhook.next_at
        # Queued first: a watchdog lost with its process would leave nothing watching.
        await engine.kick_webhook(job.id, now + WATCH_S, watch=True)
        if not job.ended or due is None or now - due < GRACE_S:
            return  # not ended yet, or the ordinary kick is (or may still be) on its way
    body = orjson.dumps(status_json(job))
    attempt = await webhooks.deliver(rt, job.webhook.url, body, job.id)
    attempts = job.webhook.attempts + 1
    url = job.webhook.url
    if attempt.outcome == "delivered":
        await engine.store.set_webhook(job.id, WebhookState(url, "delivered", attempts))
        return
    if attempt.outcome == "refused":
        state = WebhookState(url, "refused", attempts, error=attempt.error)
        await engine.store.set_webhook(job.id, state)
        return
    delay = webhooks.next_delay(attempts)
    if delay is None:
        await engine.store.set_webhook(
            job.id, WebhookState(url, "failed", attempts, error=attempt.error)
        )
        return
    due = time.time() + delay
    await engine.store.set_webhook(
        job.id, WebhookState(url, "retrying", attempts, next_at=due, error=attempt.error)
    )
    await engine.kick_webhook(job.id, due)
