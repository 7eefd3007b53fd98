"""deliver_webhook's work: post an ended job's status to its webhook_url, once per
message, and record how it went (SPEC §8). The signing, the SSRF guard, the deadline and
the retry schedule are server/webhooks.py's; this module keeps the job's webhook state and
queues the next attempt with the `not_before` label, so retries survive a restart.
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


async def deliver(rt: Runtime, engine: Engine, job_id: str) -> None:
    job = await engine.store.get(job_id, None)
    if job is None or job.webhook is None or job.webhook.status in SETTLED:
        return  # swept, no webhook, or an earlier run of this message settled it
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
