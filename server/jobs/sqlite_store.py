"""The JobStore over `<data dir>/jobs.sqlite3`, for one machine's `serve --workers N`.

Every change is one `BEGIN IMMEDIATE` transaction in the process's flock turn
(state/sqlite.py), so counts stay exact and `finish_item` ends a job exactly once however
many processes finish items at once. The file is the jobs' own (not state.sqlite3): the
rate-limit charge on every keyed request never queues behind a batch's writes. The
SqliteBroker keeps its queue in the same file.
"""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path
from typing import Any

import orjson

from server.jobs.model import ENDED, Item, ItemOutcome, Job, NewJob, WebhookState
from server.state.sqlite import SqliteFile, transaction

SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY, owner TEXT NOT NULL, kind TEXT NOT NULL, status TEXT NOT NULL,
    count INTEGER NOT NULL, done INTEGER NOT NULL DEFAULT 0, failed INTEGER NOT NULL DEFAULT 0,
    cancelled INTEGER NOT NULL DEFAULT 0, created_at REAL NOT NULL, finished_at REAL,
    base_url TEXT NOT NULL, webhook_url TEXT, webhook_status TEXT,
    webhook_attempts INTEGER NOT NULL DEFAULT 0, webhook_next_at REAL, webhook_error TEXT);
CREATE INDEX IF NOT EXISTS jobs_finished ON jobs (finished_at);
CREATE TABLE IF NOT EXISTS items (
    job TEXT NOT NULL, idx INTEGER NOT NULL, status TEXT NOT NULL, spec BLOB NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0, result BLOB, error BLOB,
    PRIMARY KEY (job, idx));
CREATE INDEX IF NOT EXISTS items_status ON items (status);
CREATE TABLE IF NOT EXISTS queue (
    id INTEGER PRIMARY KEY, task TEXT NOT NULL, payload BLOB NOT NULL,
    ready_at REAL NOT NULL, owner TEXT, lease_until REAL);
CREATE INDEX IF NOT EXISTS queue_ready ON queue (ready_at);
"""
_JOB_COLUMNS = (
    "id, owner, kind, status, count, done, failed, cancelled, created_at, finished_at, "
    "base_url, webhook_url, webhook_status, webhook_attempts, webhook_next_at, webhook_error"
)


def jobs_file(path: Path, timeout_s: float) -> SqliteFile:
    return SqliteFile(path, timeout_s, SCHEMA, "job store")


class SqliteJobs:
    """JobStore (server/jobs/store.py) over jobs.sqlite3."""

    def __init__(self, path: Path, timeout_s: float) -> None:
        self._file = jobs_file(path, timeout_s)
        self._run = self._file.run

    async def create(self, job: NewJob) -> Job:
        def write(db: sqlite3.Connection) -> None:
            webhook_status = "pending" if job.webhook_url else None
            with transaction(db):
                db.execute(
                    "INSERT INTO jobs (id, owner, kind, status, count, created_at, base_url, "
                    "webhook_url, webhook_status) VALUES (?, ?, ?, 'queued', ?, ?, ?, ?, ?)",
                    (
                        job.id,
                        job.owner,
                        job.kind,
                        len(job.items),
                        job.created_at,
                        job.base_url,
                        job.webhook_url,
                        webhook_status,
                    ),
                )
                db.executemany(
                    "INSERT INTO items (job, idx, status, spec) VALUES (?, ?, 'pending', ?)",
                    [(job.id, i, orjson.dumps(spec)) for i, spec in enumerate(job.items)],
                )

        await self._run(write)
        found = await self.get(job.id, None)
        assert found is not None  # just written, in the file every process shares
        return found

    async def get(self, job_id: str, owner: str | None) -> Job | None:
        return await self._run(lambda db: _read(db, job_id, owner))

    async def start_item(self, job_id: str, index: int) -> dict[str, Any] | None:
        def start(db: sqlite3.Connection) -> dict[str, Any] | None:
            with transaction(db):
                row = db.execute(
                    "SELECT status, spec FROM items WHERE job = ? AND idx = ?", (job_id, index)
                ).fetchone()
                if row is None or row[0] in ENDED:
                    return None
                db.execute(
                    "UPDATE items SET status = 'running', attempts = attempts + 1 "
                    "WHERE job = ? AND idx = ?",
                    (job_id, index),
                )
                db.execute(
                    "UPDATE jobs SET status = 'running' WHERE id = ? AND status = 'queued'",
                    (job_id,),
                )
                spec: dict[str, Any] = orjson.loads(row[1])
                return spec

        return await self._run(start)

    async def finish_item(self, job_id: str, index: int, outcome: ItemOutcome) -> bool:
        def finish(db: sqlite3.Connection) -> bool:
            with transaction(db):
                row = db.execute(
                    "SELECT status FROM items WHERE job = ? AND idx = ?", (job_id, index)
                ).fetchone()
                if row is None or row[0] in ENDED:
                    return False  # gone, or finished by an earlier run of the same item
                db.execute(
                    "UPDATE items SET status = ?, result = ?, error = ? WHERE job = ? AND idx = ?",
                    (
                        outcome.status,
                        None if outcome.result is None else orjson.dumps(outcome.result),
                        None if outcome.error is None else orjson.dumps(outcome.error),
                        job_id,
                        index,
                    ),
                )
                column = "done" if outcome.status == "succeeded" else "failed"
                db.execute(f"UPDATE jobs SET {column} = {column} + 1 WHERE id = ?", (job_id,))  # noqa: S608  # one of two literals
                return _end_if_done(db, job_id, time.time())

        return await self._run(finish)

    async def cancel(self, job_id: str, owner: str | None) -> Job | None:
        def cancel(db: sqlite3.Connection) -> Job | None:
            with transaction(db):
                row = db.execute(
                    "SELECT owner, status FROM jobs WHERE id = ?", (job_id,)
                ).fetchone()
                if row is None or (owner is not None and row[0] != owner):
                    return None
                if row[1] != "completed":
                    dropped = db.execute(
                        "UPDATE items SET status = 'cancelled' "
                        "WHERE job = ? AND status = 'pending'",
                        (job_id,),
                    ).rowcount
                    db.execute(
                        "UPDATE jobs SET status = 'cancelled', cancelled = cancelled + ? "
                        "WHERE id = ?",
                        (dropped, job_id),
                    )
                    _end_if_done(db, job_id, time.time())
            return _read(db, job_id, owner)

        return await self._run(cancel)

    async def set_webhook(self, job_id: str, state: WebhookState) -> None:
        await self._run(
            lambda db: db.execute(
                "UPDATE jobs SET webhook_url = ?, webhook_status = ?, webhook_attempts = ?, "
                "webhook_next_at = ?, webhook_error = ? WHERE id = ?",
                (state.url, state.status, state.attempts, state.next_at, state.error, job_id),
            )
        )

    async def counts(self) -> dict[str, int]:
        def count(db: sqlite3.Connection) -> dict[str, int]:
            rows = db.execute("SELECT status, count(*) FROM items GROUP BY status").fetchall()
            return {str(status): int(n) for status, n in rows}

        return await self._run(count)

    async def sweep(self, now: float, keep_s: float) -> int:
        def sweep(db: sqlite3.Connection) -> int:
            with transaction(db):
                gone = [
                    r[0]
                    for r in db.execute(
                        "SELECT id FROM jobs WHERE finished_at < ? LIMIT 500", (now - keep_s,)
                    )
                ]
                db.executemany("DELETE FROM items WHERE job = ?", [(j,) for j in gone])
                db.executemany("DELETE FROM jobs WHERE id = ?", [(j,) for j in gone])
            return len(gone)

        return await self._run(sweep)

    async def close(self) -> None:
        await self._file.close()


def _end_if_done(db: sqlite3.Connection, job_id: str, now: float) -> bool:
    """End the job when no item is left to run; True when this call ended it."""
    left = db.execute(
        "SELECT count(*) FROM items WHERE job = ? AND status IN ('pending', 'running')",
        (job_id,),
    ).fetchone()[0]
    if left:
        return False
    ended = db.execute(
        "UPDATE jobs SET finished_at = ?, "
        "status = CASE status WHEN 'cancelled' THEN 'cancelled' ELSE 'completed' END "
        "WHERE id = ? AND finished_at IS NULL",
        (now, job_id),
    ).rowcount
    return bool(ended)


def _read(db: sqlite3.Connection, job_id: str, owner: str | None) -> Job | None:
    row = db.execute(f"SELECT {_JOB_COLUMNS} FROM jobs WHERE id = ?", (job_id,)).fetchone()  # noqa: S608  # a constant
    if row is None or (owner is not None and row[1] != owner):
        return None
    items = tuple(
        Item(
            index=idx,
            status=status,
            attempts=attempts,
            result=None if result is None else orjson.loads(result),
            error=None if error is None else orjson.loads(error),
        )
        for idx, status, attempts, result, error in db.execute(
            "SELECT idx, status, attempts, result, error FROM items WHERE job = ? ORDER BY idx",
            (job_id,),
        )
    )
    webhook = None
    if row[11] is not None:
        webhook = WebhookState(
            url=row[11], status=row[12], attempts=row[13], next_at=row[14], error=row[15]
        )
    return Job(
        id=row[0],
        owner=row[1],
        kind=row[2],
        status=row[3],
        count=row[4],
        done=row[5],
        failed=row[6],
        cancelled=row[7],
        created_at=row[8],
        finished_at=row[9],
        base_url=row[10],
        webhook=webhook,
        items=items,
    )
