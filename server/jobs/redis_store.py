"""The JobStore on Redis (IMGCDN_REDIS_URL): jobs every replica can read, cancel and finish.

A job is three hashes under one hash tag (redis_lua.py has the layout), written by one
MULTI at create and changed only by the Lua scripts there, so the counts stay exact however
many replicas finish items at once, and `finish_item` answers True exactly once per job.
An ended job's keys expire `keep_s` after it ended (PEXPIRE, set by the script that ended
it), so Redis itself drops them; its item specs (inline images too) go at once. The index
`imgcdn:jobs` (a ZSET of ids by creation time) is what counts() and sweep() walk; it is a
key of its own (another slot on a Cluster), so it is written first and an entry whose job
is gone is just dropped, never half a job kept.
Every Redis failure is a StateUnavailable: a 503 with Retry-After, never a 500.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from typing import Any

import orjson
from redis.asyncio import Redis
from redis.exceptions import RedisError
from redis.typing import EncodableT, FieldT

from server.errors import StateUnavailable
from server.jobs import redis_lua
from server.jobs.model import Item, ItemOutcome, Job, NewJob, WebhookState

INDEX = "imgcdn:jobs"
STATES = ("pending", "running", "succeeded", "failed", "cancelled")
STATE_FIELDS = ["count", "done", "failed", "cancelled", "running"]  # counts() reads these
_CHUNK = 500  # index entries per pipelined round trip in counts() and sweep()


def _keys(job_id: str) -> list[str]:
    tag = f"imgcdn:job:{{{job_id}}}"
    return [tag, f"{tag}:items", f"{tag}:specs"]


def _plausible(job_id: str) -> bool:
    # An id from a URL path with braces would change the hash tag (and, on a Cluster,
    # make a cross-slot script); no id we issue has them, so such a job does not exist.
    return bool(job_id) and "{" not in job_id and "}" not in job_id


@contextlib.contextmanager
def _guard(what: str) -> Iterator[None]:
    try:
        yield
    except (RedisError, OSError) as exc:
        raise StateUnavailable(f"jobs on redis: {what} failed: {type(exc).__name__}") from exc


def _decoded(member: object) -> str:
    assert isinstance(member, bytes)  # the client answers bytes (no decode_responses)
    return member.decode()


def _text(raw: dict[bytes, bytes], name: str) -> str:
    return raw.get(name.encode(), b"").decode()


def _number(raw: dict[bytes, bytes], name: str) -> float | None:
    value = raw.get(name.encode(), b"")
    return float(value) if value else None


def _job(job_id: str, raw: dict[bytes, bytes], items: dict[bytes, bytes]) -> Job:
    count = int(raw[b"count"])
    parsed = []
    for i in range(count):
        outcome = items.get(b"%d:o" % i)
        ended = orjson.loads(outcome) if outcome else {}
        parsed.append(
            Item(
                index=i,
                status=items[b"%d" % i].decode(),  # type: ignore[arg-type]  # written by us only
                attempts=int(items.get(b"%d:n" % i, b"0")),
                result=ended.get("result"),
                error=ended.get("error"),
            )
        )
    webhook = None
    if url := _text(raw, "webhook_url"):
        webhook = WebhookState(
            url=url,
            status=_text(raw, "webhook_status") or "pending",  # type: ignore[arg-type]
            attempts=int(_number(raw, "webhook_attempts") or 0),
            next_at=_number(raw, "webhook_next_at"),
            error=_text(raw, "webhook_error") or None,
        )
    return Job(
        id=job_id,
        owner=_text(raw, "owner"),
        kind=_text(raw, "kind"),
        status=_text(raw, "status"),  # type: ignore[arg-type]  # written by us only
        count=count,
        done=int(raw[b"done"]),
        failed=int(raw[b"failed"]),
        cancelled=int(raw[b"cancelled"]),
        created_at=float(raw[b"created_at"]),
        finished_at=_number(raw, "finished_at"),
        webhook=webhook,
        base_url=_text(raw, "base_url"),
        items=tuple(parsed),
    )


class RedisJobs:
    """JobStore over `client` (redisconn.connect: bounded timeouts). `keep_s`: how long an
    ended job stays answerable (IMGCDN_JOB_KEEP_S)."""

    def __init__(self, client: Redis, keep_s: float = 86_400.0) -> None:
        self.client = client
        self.keep_ms = max(1, round(keep_s * 1000))
        self._start = client.register_script(redis_lua.START)
        self._finish = client.register_script(redis_lua.FINISH)
        self._cancel = client.register_script(redis_lua.CANCEL)
        self._webhook = client.register_script(redis_lua.SET_WEBHOOK)

    async def create(self, job: NewJob) -> Job:
        if not _plausible(job.id):
            raise ValueError(f"job id {job.id!r} cannot be a Redis hash tag")
        head: dict[FieldT, EncodableT] = {
            "owner": job.owner,
            "kind": job.kind,
            "status": "queued" if job.items else "completed",
            "count": len(job.items),
            "done": 0,
            "failed": 0,
            "cancelled": 0,
            "running": 0,
            "created_at": repr(job.created_at),
            "base_url": job.base_url,
            "webhook_url": job.webhook_url or "",
        }
        if not job.items:
            head["finished_at"] = repr(job.created_at)
        keys = _keys(job.id)
        with _guard("create"):
            await self.client.zadd(INDEX, {job.id: job.created_at})
            async with self.client.pipeline(transaction=True) as pipe:
                pipe.hset(keys[0], mapping=head)
                if job.items:
                    pipe.hset(keys[1], mapping={str(i): "pending" for i in range(len(job.items))})
                    specs: dict[FieldT, EncodableT] = {
                        str(i): orjson.dumps(spec) for i, spec in enumerate(job.items)
                    }
                    pipe.hset(keys[2], mapping=specs)
                else:
                    pipe.pexpire(keys[0], self.keep_ms)
                await pipe.execute()
        stored = await self.get(job.id, None)
        assert stored is not None  # just written in one transaction
        return stored

    async def get(self, job_id: str, owner: str | None) -> Job | None:
        if not _plausible(job_id):
            return None
        keys = _keys(job_id)
        with _guard("get"):
            async with self.client.pipeline(transaction=True) as pipe:
                pipe.hgetall(keys[0])
                pipe.hgetall(keys[1])
                raw, items = await pipe.execute()
        if not raw or (owner is not None and raw.get(b"owner", b"").decode() != owner):
            return None
        return _job(job_id, raw, items)

    async def start_item(self, job_id: str, index: int) -> dict[str, Any] | None:
        if not _plausible(job_id):
            return None
        with _guard("start_item"):
            spec = await self._start(keys=_keys(job_id), args=[index])
        return None if spec is None else orjson.loads(spec)

    async def finish_item(self, job_id: str, index: int, outcome: ItemOutcome) -> bool:
        if not _plausible(job_id):
            return False
        body = orjson.dumps({"result": outcome.result, "error": outcome.error})
        args = [index, outcome.status, body, repr(time.time()), self.keep_ms]
        with _guard("finish_item"):
            return bool(await self._finish(keys=_keys(job_id), args=args))

    async def cancel(self, job_id: str, owner: str | None) -> Job | None:
        if not _plausible(job_id):
            return None
        keys = _keys(job_id)
        args = ["0" if owner is None else "1", owner or "", repr(time.time()), self.keep_ms]
        with _guard("cancel"):
            # One transaction: the answer is the job exactly as this cancel left it.
            async with self.client.pipeline(transaction=True) as pipe:
                await self._cancel(keys=keys, args=args, client=pipe)
                pipe.hgetall(keys[0])
                pipe.hgetall(keys[1])
                found, raw, items = await pipe.execute()
        return _job(job_id, raw, items) if found else None

    async def set_webhook(self, job_id: str, state: WebhookState) -> None:
        if not _plausible(job_id):
            return
        fields = ["webhook_url", state.url, "webhook_status", state.status]
        fields += ["webhook_attempts", str(state.attempts)]
        fields += ["webhook_next_at", "" if state.next_at is None else repr(state.next_at)]
        fields += ["webhook_error", state.error or ""]
        with _guard("set_webhook"):
            await self._webhook(keys=_keys(job_id)[:1], args=fields)

    async def counts(self) -> dict[str, int]:
        totals = dict.fromkeys(STATES, 0)
        with _guard("counts"):
            start = 0
            while ids := await self.client.zrange(INDEX, start, start + _CHUNK - 1):
                start += _CHUNK
                async with self.client.pipeline(transaction=False) as pipe:
                    for job_id in ids:
                        pipe.hmget(_keys(_decoded(job_id))[0], STATE_FIELDS)
                    for row in await pipe.execute():
                        if row[0] is None:
                            continue  # expired: sweep() drops its index entry
                        count, done, failed, cancelled, running = (int(v) for v in row)
                        totals["succeeded"] += done
                        totals["failed"] += failed
                        totals["cancelled"] += cancelled
                        totals["running"] += running
                        totals["pending"] += count - done - failed - cancelled - running
        return totals

    async def sweep(self, now: float, keep_s: float) -> int:
        """Drop the index entries of jobs Redis has expired, and any ended job older than
        `keep_s` still kept (its TTL came from a longer keep time)."""
        dropped = 0
        with _guard("sweep"):
            # Only a job created before the cut can have ended before it.
            old = await self.client.zrangebyscore(INDEX, "-inf", now - keep_s)
            for at in range(0, len(old), _CHUNK):
                ids = [_decoded(job_id) for job_id in old[at : at + _CHUNK]]
                async with self.client.pipeline(transaction=False) as pipe:
                    for job_id in ids:
                        pipe.hmget(_keys(job_id)[0], "status", "finished_at")
                    rows = await pipe.execute()
                gone = []
                for job_id, (status, finished_at) in zip(ids, rows, strict=True):
                    if status is None:
                        gone.append(job_id)
                    elif finished_at and float(finished_at) < now - keep_s:
                        await self.client.unlink(*_keys(job_id))
                        gone.append(job_id)
                if gone:
                    await self.client.zrem(INDEX, *gone)
                    dropped += len(gone)
        return dropped

    async def close(self) -> None:
        """Nothing to release: the client is the Runtime's (closed after everything)."""
