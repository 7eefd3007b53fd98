"""A taskiq broker over a `queue` table in `<data dir>/jobs.sqlite3`: the embedded queue.

taskiq keeps no SQLite broker, so this is the thin adapter docs/design/jobs.md §5 sets out:
kick = INSERT (the `not_before` label, unix seconds, becomes `ready_at`); listen = claim
the oldest ready row with a lease, in one BEGIN IMMEDIATE transaction; ack = DELETE. The
receiver acks only after the item's outcome is in the JobStore, so a message is delivered
at least once.

Takeover of a dead process's claims does not wait for the lease. Each listening broker holds
an flock on its own file in `<data dir>/jobs/owners/` for as long as it lives; a claimer
that can take another owner's lock knows that owner is gone (the kernel drops the locks of a
SIGKILLed process) and frees its rows. The lease (`lease_s`) stays as the backstop, for an
owner that hangs without dying.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
import secrets
import sqlite3
import time
from collections.abc import AsyncGenerator, Awaitable, Callable
from pathlib import Path

from taskiq import AckableMessage, AsyncBroker, BrokerMessage

from server.jobs.sqlite_store import jobs_file
from server.state.sqlite import transaction

log = logging.getLogger("imgcdn")
IDLE_POLL_S = 0.2  # how often an idle receiver looks for work kicked by other processes
DEAD_CHECK_S = 0.5  # how often a claimer looks for owners that died


class SqliteBroker(AsyncBroker):
    def __init__(self, path: Path, lease_s: float, timeout_s: float = 2.0) -> None:
        super().__init__()
        self.lease_s = lease_s
        self._file = jobs_file(path, timeout_s)
        self._owners = path.parent / "jobs" / "owners"
        self.owner = f"{os.getpid()}-{secrets.token_hex(4)}"
        self._owner_fd: int | None = None
        self._kicked = asyncio.Event()
        self._checked = 0.0

    async def kick(self, message: BrokerMessage) -> None:
        now = time.time()
        ready_at = float(message.labels.get("not_before") or now)
        await self._file.run(
            lambda db: db.execute(
                "INSERT INTO queue (task, payload, ready_at) VALUES (?, ?, ?)",
                (message.task_name, message.message, ready_at),
            )
        )
        if ready_at <= now:
            self._kicked.set()  # this process's own receiver need not wait for its poll

    async def listen(self) -> AsyncGenerator[bytes | AckableMessage, None]:
        await asyncio.to_thread(self._register)
        while True:
            claimed = await self._file.run(self._claim)
            if claimed is None:
                self._kicked.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._kicked.wait(), IDLE_POLL_S)
                continue
            row_id, payload = claimed
            yield AckableMessage(data=payload, ack=self._acker(row_id))

    def _acker(self, row_id: int) -> Callable[[], Awaitable[None]]:
        async def ack() -> None:
            await self._file.run(
                lambda db: db.execute(
                    "DELETE FROM queue WHERE id = ? AND owner = ?", (row_id, self.owner)
                )
            )

        return ack

    async def depth(self) -> int:
        """Messages waiting or running (for /metrics)."""
        return await self._file.run(
            lambda db: int(db.execute("SELECT count(*) FROM queue").fetchone()[0])
        )

    async def shutdown(self) -> None:
        """Hand back what this process claimed and did not ack (a delivery fetched while the
        receiver stopped), then drop the owner lock: nothing waits for the lease."""
        await super().shutdown()
        if self._owner_fd is not None:
            with contextlib.suppress(Exception):
                await self._file.run(
                    lambda db: db.execute(
                        "UPDATE queue SET owner = NULL, lease_until = NULL WHERE owner = ?",
                        (self.owner,),
                    )
                )
            os.close(self._owner_fd)
            self._owner_fd = None
            with contextlib.suppress(OSError):
                (self._owners / f"{self.owner}.lock").unlink()
        await self._file.close()

    def _register(self) -> None:
        if self._owner_fd is not None:
            return
        self._owners.mkdir(parents=True, exist_ok=True)
        # Locked before it gets its name: a claimer never sees it unlocked, and so never
        # takes a starting owner for a dead one.
        fresh = self._owners / f".{self.owner}.new"
        fd = os.open(fresh, os.O_RDWR | os.O_CREAT, 0o600)
        fcntl.flock(fd, fcntl.LOCK_EX)
        fresh.rename(self._owners / f"{self.owner}.lock")
        self._owner_fd = fd
        for lock in self._owners.glob("*.lock"):  # files of owners that died with no claims
            _alive(lock)

    def _claim(self, db: sqlite3.Connection) -> tuple[int, bytes] | None:
        now = time.time()
        with transaction(db):
            if now - self._checked > DEAD_CHECK_S:
                self._checked = now
                self._free_dead(db)
            row = db.execute(
                "SELECT id, payload FROM queue WHERE ready_at <= ? "
                "AND (owner IS NULL OR lease_until < ?) ORDER BY ready_at, id LIMIT 1",
                (now, now),
            ).fetchone()
            if row is None:
                return None
            db.execute(
                "UPDATE queue SET owner = ?, lease_until = ? WHERE id = ?",
                (self.owner, now + self.lease_s, row[0]),
            )
            return int(row[0]), bytes(row[1])

    def _free_dead(self, db: sqlite3.Connection) -> None:
        """Free the rows of owners whose lock is free: their process is gone."""
        owners = db.execute(
            "SELECT DISTINCT owner FROM queue WHERE owner IS NOT NULL AND owner != ?",
            (self.owner,),
        ).fetchall()
        for (owner,) in owners:
            if _alive(self._owners / f"{owner}.lock"):
                continue
            freed = db.execute(
                "UPDATE queue SET owner = NULL, lease_until = NULL WHERE owner = ?", (owner,)
            ).rowcount
            log.warning("jobs: took over %d queued item(s) of a stopped process", freed)


def _alive(lock: Path) -> bool:
    try:
        fd = os.open(lock, os.O_RDWR)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)  # closing drops the lock, if it was taken
    with contextlib.suppress(OSError):
        lock.unlink()
    return False
