"""The batch operations (SPEC §8, seed 002): rows of the operation table routes/catalog.py
assembles, with the bodies their handlers check (server/jobs/batch.py) and the answers."""

from __future__ import annotations

from server.jobs.batch import BODY, CANCEL_BODY
from server.openapi import Operation, Reply
from server.routes.catalog_admin import TINY_PNG
from server.schema import Array, Choice, Int, Obj
from server.shapes import BIG, described

ERRORS = (400, 401, 403, 404, 409, 413, 415, 422, 429, 503)
_TEXT = described({"type": "string"})
_WHEN = described({"type": "string"}, "RFC 3339, UTC")
_COUNT = Int(0, BIG)
JOB_STATUS = Choice(("queued", "running", "completed", "cancelled"))
IMAGE_JOB = Obj(
    {"id": _TEXT, "status": JOB_STATUS, "count": _COUNT, "created_at": _WHEN},
    frozenset({"id", "status", "count", "created_at"}),
    "A submitted batch (seed 002's ImageJob)",
    title="ImageJob",
)
ITEM_RESULT = Obj(
    {
        "index": _COUNT,
        "status": Choice(("pending", "running", "succeeded", "failed", "cancelled")),
        "image_url": described({"type": "string"}, "absolute: /r/{result}.{ext}?exp=..&sig=.."),
        "mime": _TEXT,
        "width": _COUNT,
        "height": _COUNT,
        "bytes": _COUNT,
        "format": _TEXT,
        "expires_at": Int(0, BIG, "unix seconds: when image_url stops working"),
        "error": described({"type": "object"}, "{code, message, param?}: why the item failed"),
    },
    frozenset({"index", "status"}),
    "One item's state and, once it ended, its result or error",
    title="BatchItemResult",
)
WEBHOOK = Obj(
    {
        "url": _TEXT,
        "status": Choice(("pending", "delivered", "retrying", "failed", "refused")),
        "attempts": _COUNT,
        "error": _TEXT,
        "next_at": _WHEN,
    },
    frozenset({"url", "status", "attempts"}),
    "The webhook's delivery state",
    title="BatchWebhook",
)
JOB_STATUS_ANSWER = Obj(
    {
        "id": _TEXT,
        "status": JOB_STATUS,
        "count": _COUNT,
        "done": _COUNT,
        "failed": _COUNT,
        "cancelled": _COUNT,
        "created_at": _WHEN,
        "finished_at": _WHEN,
        "webhook": WEBHOOK,
        "results": Array(ITEM_RESULT, 100_000),
    },
    frozenset({"id", "status", "count", "done", "failed", "created_at", "results"}),
    "A batch's progress and every item's result",
    title="ImageJobStatus",
)
CANCELLED = Obj(
    {"id": _TEXT, "status": JOB_STATUS},
    frozenset({"id", "status"}),
    "The job's status after the cancel",
    title="ImageJobCancelled",
)
ID = {"id": "the job id (job_...)"}


def batch() -> list[Operation]:
    return [
        Operation(
            "POST",
            "/v1/image/batch/submit",
            "Submit a batch of images to process; poll its status or get a webhook",
            "batch",
            "key",
            scope="image.process",
            body=BODY,
            replies={202: Reply("Queued", IMAGE_JOB)},
            errors=ERRORS,
            example={
                "items": [
                    {"image": TINY_PNG, "ops": [{"op": "flip", "params": {"direction": "h"}}]}
                ]
            },
        ),
        Operation(
            "GET",
            "/v1/image/batch/status/{id}",
            "A batch's progress and per-item results",
            "batch",
            "key",
            scope="image.process",
            params=ID,
            replies={200: Reply("The job", JOB_STATUS_ANSWER)},
            errors=ERRORS,
        ),
        Operation(
            "POST",
            "/v1/image/batch/cancel/{id}",
            "Cancel a batch: pending items are dropped, running ones finish (idempotent)",
            "batch",
            "key",
            scope="image.process",
            body=CANCEL_BODY,
            params=ID,
            replies={200: Reply("Cancelled (or already ended)", CANCELLED)},
            errors=ERRORS,
        ),
    ]
