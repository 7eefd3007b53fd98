"""The job queue on Redis: taskiq-redis's RedisStreamBroker (a stream, one consumer group,
one consumer per receiver, ack after the work), with the fixes docs/design/jobs.md §1 found
it needs for at-least-once under SIGKILL. A thin adapter; drop the reclaim part when
taskiq-redis PR #129 ships.

What this subclass changes, and why:
- Reclaim runs on every turn of the listen loop, empty reads included (upstream only after
  a non-empty read, so a dead consumer's entries waited for new traffic), at most once per
  `tick_s`. Two ways: entries of a consumer whose liveness key (`imgcdn:q:alive:<name>`,
  refreshed every tick, expiring after `alive_s`) is gone are claimed at once; entries idle
  for `idle_s` (a hung consumer) are taken by XAUTOCLAIM as the backstop.
- No autoclaim lock at all (upstream's could be left held forever by a killed holder,
  taskiq-redis#131): XCLAIM and XAUTOCLAIM with a minimum idle time are already exclusive,
  as a claimed entry's idle time drops to 0, so a second claimer skips it.
- One entry per read (upstream reads 100): the receiver pulls a message only when it has a
  free slot (IMGCDN_JOB_CONCURRENCY), so a consumer holds no more entries than it can run,
  and a dead one leaves at most that many to take over.
- Ack is XACK + XDEL in one transaction: the stream holds only work not yet done (no MAXLEN
  trimming, which would drop un-acked entries too), so its length is the queue depth.
- The `not_before` label (unix seconds): such a message waits in a ZSET and one Lua script,
  run by every receiver once per tick, moves the due ones into the stream.
Redis down: kick raises StateUnavailable (503); the listen loop and the ticker wait and
carry on, and un-acked entries are claimed again later, so nothing is lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
import uuid
from collections.abc import AsyncGenerator, Awaitable, Callable, Sequence
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError, ResponseError
from taskiq import AckableMessage
from taskiq.message import BrokerMessage
from taskiq_redis import RedisStreamBroker

from server.errors import StateUnavailable

log = logging.getLogger(__name__)
STREAM = "imgcdn:q:{items}"  # hash tag: the stream and its delayed ZSET share a slot
DELAYED = "imgcdn:q:{items}:delayed"
GROUP = "imgcdn"
ALIVE = "imgcdn:q:alive:"
_READ_BLOCK_MS = 1000  # an empty read returns after this, so reclaim runs at least as often
_RETRY_S = 0.5  # pause of the listen loop and the ticker after a Redis error
_MOVE_BATCH = 100

# KEYS: delayed ZSET, stream; ARGV: now, batch. Due messages move in one atomic step, so two
# receivers ticking at once never both add one (ZREM happens with its XADD).
_MOVE_DUE = """
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[2]))
for _, message in ipairs(due) do
  redis.call('XADD', KEYS[2], '*', 'data', message)
  redis.call('ZREM', KEYS[1], message)
end
return #due
"""


Entry = tuple[bytes, dict[bytes, bytes]]


def _entries(raw: Sequence[Any]) -> list[Entry]:
    """Stream entries as redis-py parses them (bytes, no decode_responses), minus the
    ones deleted meanwhile (Redis 6.2 answers those as nil)."""
    return [(entry[0], entry[1]) for entry in raw if entry and entry[1] is not None]


def consumer_name() -> str:
    """`<host>-<pid>-<random>`: unique per receiver, readable in XINFO."""
    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"


class StreamBroker(RedisStreamBroker):
    """The Redis queue of one receiver named `consumer`, running at most `concurrency`
    items. `timeout_s` bounds each Redis call (IMGCDN_STATE_TIMEOUT_S)."""

    def __init__(
        self,
        url: str,
        consumer: str,
        concurrency: int,
        *,
        timeout_s: float = 2.0,
        idle_s: float = 60.0,
        alive_s: float = 10.0,
        tick_s: float = 1.0,
    ) -> None:
        super().__init__(
            url,
            queue_name=STREAM,
            consumer_group_name=GROUP,
            consumer_name=consumer,
            consumer_id="0",  # a group made after the first kick still sees that message
            xread_block=_READ_BLOCK_MS,
            maxlen=None,
            idle_timeout=round(idle_s * 1000),
            unacknowledged_batch_size=concurrency,
            xread_count=1,
            # listen + ticker + one ack per running item + kicks from request handlers
            max_connection_pool_size=concurrency + 8,
            socket_timeout=timeout_s + _READ_BLOCK_MS / 1000,  # a blocked read is no hang
            socket_connect_timeout=timeout_s,
            retry=Retry(NoBackoff(), 1),  # asyncio's: the sync one never awaits (redisconn.py)
        )
        self.alive_key = ALIVE + consumer
        self.alive_ms = round(alive_s * 1000)
        self.tick_s = tick_s
        self._next_reclaim = 0.0
        self._cursor = "0-0"
        self._ticker: asyncio.Task[None] | None = None
        self._unacked: set[str] = set()  # acks Redis refused, retried by the ticker

    def _redis(self) -> Redis:
        return Redis(connection_pool=self.connection_pool)

    async def startup(self) -> None:
        await super(RedisStreamBroker, self).startup()  # taskiq's own; the group is below
        try:
            await self._declare_consumer_group()
            await self._tick()
        except (RedisError, OSError) as exc:  # the loops below retry; serve still starts
            log.warning("job queue: redis unreachable at start (%s)", type(exc).__name__)
        self._ticker = asyncio.create_task(self._run_ticker(), name="imgcdn-queue-ticker")

    async def shutdown(self) -> None:
        if self._ticker is not None:
            self._ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._ticker
        # Not alive any more: entries read and not run are taken over at once.
        with contextlib.suppress(RedisError, OSError):
            async with self._redis() as conn:
                if self._unacked:
                    await self._ack(conn, sorted(self._unacked))
                await conn.delete(self.alive_key)
        await super().shutdown()

    async def kick(self, message: BrokerMessage) -> None:
        not_before = float(message.labels.get("not_before") or 0)
        try:
            async with self._redis() as conn:
                if not_before > time.time():
                    await conn.zadd(DELAYED, {message.message: not_before})
                else:
                    await conn.xadd(STREAM, {b"data": message.message})
        except (RedisError, OSError) as exc:
            raise StateUnavailable(f"job queue: kick failed: {type(exc).__name__}") from exc

    def _ack_generator(self, id: str, queue_name: str) -> Callable[[], Awaitable[None]]:
        async def ack() -> None:
            try:
                await self._ack(conn=None, ids=[id])
            except (RedisError, OSError) as exc:
                # The work is recorded; only the ack is missing. The ticker acks it once
                # Redis answers again (a re-run, were this process to die first, counts once
                # in the JobStore). Raising would only end the receiver.
                log.warning("job queue: ack failed (%s); retried", type(exc).__name__)
                self._unacked.add(id)

        return ack

    async def _ack(self, conn: Redis | None, ids: list[str]) -> None:
        async with contextlib.AsyncExitStack() as stack:
            if conn is None:
                conn = await stack.enter_async_context(self._redis())
            async with conn.pipeline(transaction=True) as pipe:
                pipe.xack(STREAM, GROUP, *ids)
                pipe.xdel(STREAM, *ids)
                await pipe.execute()

    async def listen(self) -> AsyncGenerator[AckableMessage, None]:
        ready: list[Entry] = []
        async with self._redis() as conn:
            while True:
                if not ready:
                    try:
                        ready = await self._reclaim(conn) or await self._read(conn)
                    except (RedisError, OSError) as exc:
                        log.warning("job queue: read failed (%s)", type(exc).__name__)
                        if isinstance(exc, ResponseError) and "NOGROUP" in str(exc):
                            # Redis lost its data (no AOF): make the group again, carry on.
                            with contextlib.suppress(RedisError, OSError):
                                await self._declare_consumer_group()
                        await asyncio.sleep(_RETRY_S)  # a reconnect pace, not a wait for state
                        continue
                if ready:
                    entry_id, fields = ready.pop(0)
                    if b"data" in fields:
                        yield AckableMessage(
                            data=fields[b"data"], ack=self._ack_generator(entry_id.decode(), STREAM)
                        )

    async def _read(self, conn: Redis) -> list[Entry]:
        # redis-py types every reply as one union; XREADGROUP's is [(stream, entries)].
        fetched: list[tuple[bytes, Sequence[Any]]] = await conn.xreadgroup(
            GROUP, self.consumer_name, {STREAM: ">"}, count=self.count, block=self.block
        )  # type: ignore[assignment]
        return [entry for _, entries in fetched or [] for entry in _entries(entries)]

    async def _reclaim(self, conn: Redis) -> list[Entry]:
        """Entries of dead consumers, then ones idle for idle_s; at most once per tick."""
        if time.monotonic() < self._next_reclaim:
            return []
        self._next_reclaim = time.monotonic() + self.tick_s
        limit = self.unacknowledged_batch_size
        summary = await conn.xpending(STREAM, GROUP)
        for consumer in summary.get("consumers") or []:
            name = consumer["name"].decode()
            if name == self.consumer_name or await conn.exists(ALIVE + name):
                continue
            pending = await conn.xpending_range(STREAM, GROUP, "-", "+", limit, name)
            ids: list[bytes | str | int | memoryview] = [row["message_id"] for row in pending]
            if ids:
                # min idle 1 s: of two receivers claiming at once, the second gets nothing.
                raw = await conn.xclaim(STREAM, GROUP, self.consumer_name, 1000, ids)
                if claimed := _entries(raw):
                    log.info("job queue: took %d items of %s", len(claimed), name)
                    return claimed
        cursor, raw, *_ = await conn.xautoclaim(
            STREAM, GROUP, self.consumer_name, self.idle_timeout, self._cursor, count=limit
        )
        self._cursor = cursor.decode() if isinstance(cursor, bytes) else str(cursor)
        return _entries(raw)

    async def _tick(self) -> None:
        async with self._redis() as conn:
            await conn.set(self.alive_key, b"1", px=self.alive_ms)
            if retry := sorted(self._unacked):
                await self._ack(conn, retry)
                self._unacked.difference_update(retry)
            mover = conn.register_script(_MOVE_DUE)
            while await mover(keys=[DELAYED, STREAM], args=[repr(time.time()), _MOVE_BATCH]) == (
                _MOVE_BATCH
            ):
                pass

    async def _run_ticker(self) -> None:
        while True:
            try:
                await self._tick()
            except (RedisError, OSError) as exc:
                log.warning("job queue: tick failed (%s)", type(exc).__name__)
            await asyncio.sleep(self.tick_s)  # the tick's period

    async def depth(self) -> int:
        """Items queued or running (the stream keeps only un-acked entries) and delayed."""
        try:
            async with self._redis() as conn, conn.pipeline(transaction=False) as pipe:
                pipe.xlen(STREAM)
                pipe.zcard(DELAYED)
                return sum(await pipe.execute())
        except (RedisError, OSError) as exc:
            raise StateUnavailable(f"job queue: depth failed: {type(exc).__name__}") from exc
