"""The batch API's logic (SPEC §8, seed 002): submit, status and cancel, and the status
JSON (which webhooks post too). routes/batch.py does the HTTP; this module checks and
answers.

A submission is refused whole when any item is bad (400 naming `items[i]...`), before
anything is stored. A job belongs to the key that submitted it (the admin token's jobs to
"admin"): another key asking about it gets the 404 an unknown id gets.
"""

from __future__ import annotations

import re
import secrets
import time
from typing import TYPE_CHECKING, Any

from server import webhooks
from server.errors import BadRequest, InvalidOp, InvalidParam, JobNotFound, TooManyItems
from server.jobs import items
from server.jobs.model import Item, Job, NewJob
from server.keyfields import rfc3339
from server.schema import Array, Obj, Text

if TYPE_CHECKING:
    from server.runtime import Runtime

ID_PREFIX = "job_"
STEP_PARAM = re.compile(r"items\[\d+\]\.ops\[")
MAX_URL = 2048
BODY = Obj(
    {
        "items": Array(items.ITEM, 100_000, "the images and their steps", min_items=1),
        "webhook_url": Text(MAX_URL, "POSTed the job's status, signed, when it ends"),
        "idempotency_key": Text(
            255, "replays the first answer for 24 h", r"[\x21-\x7e]+", "printable"
        ),
    },
    frozenset({"items"}),
    "Submit a batch of images to process",
    title="batch_submit_request",
    ignored=frozenset({"api_key", "appkey"}),
)
CANCEL_BODY = Obj(
    {
        "job_id": Text(64, "the job's id, as in the path (the path wins)"),
        "idempotency_key": BODY.fields["idempotency_key"],
    },
    description="Cancel a batch job",
    title="batch_cancel_request",
    ignored=frozenset({"api_key", "appkey"}),
)


def owner_of(key_id: str | None) -> str:
    return key_id or "admin"


def check_submit(rt: Runtime, body: dict[str, Any], prefix: str, base: str) -> NewJob:
    """The job a body asks for, every item checked; owner is filled in by the caller."""
    raw_items = body.get("items")
    limit = rt.settings.batch_max_items
    if isinstance(raw_items, list) and len(raw_items) > limit:
        raise TooManyItems(
            f"items holds {len(raw_items)} items; at most {limit} per batch "
            "(IMGCDN_BATCH_MAX_ITEMS): split it"
        )
    try:
        fields = BODY.check(body, "")
        for i, raw in enumerate(raw_items or []):
            items.check(rt, raw, f"items[{i}]")
    except InvalidParam as exc:  # a step's fault is invalid_op, as process names it
        if exc.param is not None and STEP_PARAM.match(exc.param):
            raise InvalidOp(exc.param, exc.message) from None
        raise
    webhook_url = fields.get("webhook_url")
    if webhook_url is not None:
        webhook_url = webhooks.check_url(rt, webhook_url, "webhook_url")
    return NewJob(
        id=ID_PREFIX + secrets.token_urlsafe(18),
        owner="",
        kind="batch",
        items=tuple(items.spec(raw, prefix, base) for raw in raw_items or []),
        created_at=time.time(),
        webhook_url=webhook_url,
        base_url=base,
    )


def check_id(job_id: str) -> str:
    if not (job_id.startswith(ID_PREFIX) and 4 < len(job_id) <= 64 and job_id.isascii()):
        raise JobNotFound(job_id[:80])
    return job_id


def check_cancel(job_id: str, body: dict[str, Any]) -> dict[str, Any]:
    fields = CANCEL_BODY.check(body, "")
    given = fields.get("job_id")
    if given is not None and given != job_id:
        raise InvalidParam("job_id", "job_id differs from the id in the path; send one or the same")
    return fields


def ticket(job: Job) -> dict[str, Any]:
    """The 202 answer of submit: seed 002's ImageJob {id, status, count, created_at}."""
    return {
        "id": job.id,
        "status": job.status,
        "count": job.count,
        "created_at": rfc3339(int(job.created_at)),
    }


def status_json(job: Job) -> dict[str, Any]:
    """SPEC §8's status: progress, the webhook's state, and every item's outcome."""
    out: dict[str, Any] = {
        "id": job.id,
        "status": job.status,
        "count": job.count,
        "done": job.done,
        "failed": job.failed,
        "cancelled": job.cancelled,
        "created_at": rfc3339(int(job.created_at)),
    }
    if job.finished_at is not None:
        out["finished_at"] = rfc3339(int(job.finished_at))
    if job.webhook is not None:
        hook: dict[str, Any] = {
            "url": job.webhook.url,
            "status": job.webhook.status,
            "attempts": job.webhook.attempts,
        }
        if job.webhook.error:
            hook["error"] = job.webhook.error
        if job.webhook.next_at is not None and job.webhook.status == "retrying":
            hook["next_at"] = rfc3339(int(job.webhook.next_at))
        out["webhook"] = hook
    out["results"] = [_result(item) for item in job.items]
    return out


def _result(item: Item) -> dict[str, Any]:
    out: dict[str, Any] = {"index": item.index, "status": item.status}
    if item.result is not None:
        out.update(item.result)
    if item.error is not None:
        out["error"] = item.error
    return out


def needs_json(text: bool) -> None:
    if text:
        raise BadRequest("a batch is a JSON body: {items: [...]}", param="body")
