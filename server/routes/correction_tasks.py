"""Seed 003's async tasks: a small record in storage per task, run on the job engine.

A task is `seed003/<id>.json` (its state) and `seed003/<id>.src` (the input's bytes,
loaded at submit so a bad URL is the submitter's 4xx, not a failed task). The engine's
`imgcdn.run_correction` task runs it (jobs/engine.py) and writes the record once, when
done or failed: nothing half-written. A record older than IMGCDN_RESULT_TTL_S (the seed's
1 hour) answers 404 `task_expired`, as does one of another key.
"""

from __future__ import annotations

import base64
import secrets
import time
from dataclasses import asdict, dataclass, replace
from typing import Any

import orjson

from server import auth, results
from server.errors import ImgcdnError, StateUnavailable, TaskNotFound
from server.runtime import Runtime

PREFIX = "seed003/"
# Past the TTL a task answers 404 whatever is stored; its files go this much later, so a
# task finishing as its hour ends is never deleted under its writer.
SWEEP_MARGIN_S = 600.0
STATES = {"queued": 4, "done": 1, "failed": -1}  # the seed: 1 ok, >1 processing, <0 failed


@dataclass(frozen=True, slots=True)
class Task:
    id: str
    owner: str | None  # the key id; None: an admin token
    type: int
    return_type: int
    created_at: float
    processed_at: float | None = None
    completed_at: float | None = None
    result_id: str | None = None
    error: str | None = None


async def submit(
    rt: Runtime, data: bytes, caller: auth.Caller, kind: int, return_type: int
) -> Task:
    """Store the (checked) input and a queued task record, then queue its message."""
    task = Task(secrets.token_urlsafe(18), caller.key_id, kind, return_type, time.time())
    await rt.storage.put_object(f"{PREFIX}{task.id}.src", data)
    await _write(rt, task)
    try:
        await rt.engine.correction_task.kiq(task.id)
    except Exception as exc:  # no task without its queue message: nothing left behind
        await rt.storage.delete_object(f"{PREFIX}{task.id}.json")
        await rt.storage.delete_object(f"{PREFIX}{task.id}.src")
        raise StateUnavailable("the job queue is unavailable") from exc
    return task


async def execute(rt: Runtime, task_id: str) -> None:
    """Run a queued task (the engine's imgcdn.run_correction); a re-run of a finished one
    does nothing."""
    from server.routes.correction import run, save  # the route module imports this one

    task = await _read(rt, task_id)
    if task is None or task.completed_at is not None:
        return
    started = time.time()
    try:
        data = await rt.storage.get_object(f"{PREFIX}{task_id}.src")
        if data is None:
            raise TaskNotFound("the task's input is gone")
        done = await run(rt, data, "image", task.type)
        result = await save(rt, data, task.type, done)
        task = replace(task, processed_at=started, completed_at=time.time(), result_id=result.id)
    except ImgcdnError as exc:
        task = replace(task, processed_at=started, completed_at=time.time(), error=exc.message)
    await _write(rt, task)
    await rt.storage.delete_object(f"{PREFIX}{task_id}.src")


async def get(rt: Runtime, task_id: str, owner: str | None) -> Task:
    task = await _read(rt, task_id) if len(task_id) <= 64 and task_id.isascii() else None
    if task is None or (owner is not None and task.owner != owner):
        raise TaskNotFound(f"no task {task_id[:64]!r}", param="task_id")
    if task.created_at + rt.settings.result_ttl_s <= time.time():
        raise TaskNotFound(f"task {task_id} expired: results are kept 1 hour", param="task_id")
    return task


async def public(rt: Runtime, task: Task, base: str) -> dict[str, Any]:
    """The seed's `data` for a task."""
    if task.completed_at is None:
        return _data(task.id, task.created_at, None, None, "", 0, STATES["queued"])
    image = ""
    if task.result_id is not None:
        result = await results.lookup(rt, task.result_id)
        if result is None:
            raise TaskNotFound(f"task {task.id}'s result expired", param="task_id")
        if task.return_type == 1:
            image = results.public_url(rt, base, result)
        else:
            image = base64.b64encode(await results.read(rt, result)).decode()
    state = STATES["done"] if task.error is None else STATES["failed"]
    return _data(task.id, task.created_at, task.processed_at, task.completed_at, image, 100, state)


def finished(
    task_id: str, created: float, started: float, ended: float, image: str
) -> dict[str, Any]:
    return _data(task_id, created, started, ended, image, 100, STATES["done"])


def _data(
    task_id: str, created: float, started: float | None, ended: float | None,
    image: str, progress: int, state: int,
) -> dict[str, Any]:  # fmt: skip
    def stamp(t: float | None) -> str:
        return "" if t is None else str(int(t))  # the seed: Unix timestamps as strings

    return {
        "task_id": task_id,
        "created_at": stamp(created),
        "processed_at": stamp(started),
        "completed_at": stamp(ended),
        "image": image,
        "progress": progress,
        "state": state,
    }


async def _write(rt: Runtime, task: Task) -> None:
    await rt.storage.put_object(f"{PREFIX}{task.id}.json", orjson.dumps(asdict(task)))


async def _read(rt: Runtime, task_id: str) -> Task | None:
    if not task_id or any(c not in "-_" and not c.isalnum() for c in task_id):
        return None
    raw = await rt.storage.get_object(f"{PREFIX}{task_id}.json", max_bytes=4096)
    return None if raw is None else Task(**orjson.loads(raw))


async def sweep(rt: Runtime, now: float, limit: int) -> int:
    """Delete task records (and inputs of tasks that never ran) last written more than
    IMGCDN_RESULT_TTL_S + SWEEP_MARGIN_S ago: they answer 404 already. At most `limit`."""
    horizon = now - rt.settings.result_ttl_s - SWEEP_MARGIN_S
    deleted = 0
    async for key, _size, modified in rt.storage.scan_sizes(PREFIX):
        if deleted >= limit:
            break
        if modified < horizon:
            await rt.storage.delete_object(key)
            deleted += 1
    return deleted
