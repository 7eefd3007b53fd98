"""The JobStore Protocol: where jobs, items and webhook states live (SQLite in the data
dir, or Redis). Every call is atomic across processes and replicas; the engine relies on
`finish_item` answering True exactly once per job, however often an item is re-run."""

from __future__ import annotations

from typing import Any, Protocol

from server.jobs.model import ItemOutcome, Job, NewJob, WebhookState


class JobStore(Protocol):
    async def create(self, job: NewJob) -> Job:
        """Store the job with every item `pending`, in one transaction."""

    async def get(self, job_id: str, owner: str | None) -> Job | None:
        """The job with its items; None when there is none or it is another owner's
        (owner None: any owner, for the engine itself)."""

    async def start_item(self, job_id: str, index: int) -> dict[str, Any] | None:
        """Mark the item `running` (attempts + 1) and return its spec; None when the item
        has ended or was cancelled, or the job is gone: the message is then just acked.
        A `running` item is started again (its first runner died)."""

    async def finish_item(self, job_id: str, index: int, outcome: ItemOutcome) -> bool:
        """Record how the item ended, once: a second finish of an ended item changes
        nothing. True exactly once per job: when this finish ended the job."""

    async def cancel(self, job_id: str, owner: str | None) -> Job | None:
        """Pending items -> `cancelled`, the job -> `cancelled` (running items still
        finish); idempotent. None as `get`. The job's `finished_at` is set when no item
        is left running."""

    async def set_webhook(self, job_id: str, state: WebhookState) -> None:
        """Record a webhook attempt's outcome."""

    async def counts(self) -> dict[str, int]:
        """Items by state over all kept jobs (for /metrics)."""

    async def sweep(self, now: float, keep_s: float) -> int:
        """Drop jobs that ended more than `keep_s` ago; how many were dropped."""

    async def close(self) -> None:
        """Release connections."""
