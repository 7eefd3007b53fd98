"""What a job is: its items, their states, its webhook, and the JSON SPEC §8 answers with.

A job belongs to the key that submitted it (`owner`: the key id, or "" for an admin
token); another owner never sees it. Items are numbered from 0 in submit order. Every
state change goes through a JobStore, which keeps the counts (`done`, `failed`,
`cancelled`) exact however many processes finish items at once.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

JobStatus = Literal["queued", "running", "completed", "cancelled"]
ItemStatus = Literal["pending", "running", "succeeded", "failed", "cancelled"]
WebhookStatus = Literal["pending", "delivered", "retrying", "failed", "refused"]
ENDED: frozenset[str] = frozenset({"succeeded", "failed", "cancelled"})


@dataclass(frozen=True, slots=True)
class NewJob:
    """A validated submission: `items` are the item specs as the engine will run them
    (JSON-able dicts, e.g. {"image": ..., "ops": [...], "output": {...}})."""

    id: str
    owner: str
    kind: str  # "batch"; later "correction" (seed 003)
    items: tuple[dict[str, Any], ...]
    created_at: float
    webhook_url: str | None = None
    base_url: str = ""  # the public base the job's result URLs are built on


@dataclass(frozen=True, slots=True)
class ItemOutcome:
    """How an item ended: `result` (image_url, mime, width, height, bytes) when it
    succeeded, `error` ({"code", "message"}) when it failed."""

    status: Literal["succeeded", "failed"]
    result: dict[str, Any] | None = None
    error: dict[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class Item:
    index: int
    status: ItemStatus
    attempts: int = 0
    result: dict[str, Any] | None = None
    error: dict[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class WebhookState:
    url: str
    status: WebhookStatus = "pending"
    attempts: int = 0
    next_at: float | None = None  # when the next attempt is due (retrying)
    error: str | None = None  # the last attempt's failure, for the status JSON


@dataclass(frozen=True, slots=True)
class Job:
    id: str
    owner: str
    kind: str
    status: JobStatus
    count: int
    done: int  # items that succeeded
    failed: int
    cancelled: int
    created_at: float
    finished_at: float | None = None
    webhook: WebhookState | None = None
    base_url: str = ""
    items: tuple[Item, ...] = field(default=())

    @property
    def ended(self) -> bool:
        return self.status in ("completed", "cancelled")
