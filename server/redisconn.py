"""The one Redis client of a process, when IMGCDN_REDIS_URL is set (SPEC §8): shared state,
jobs and the queue of every replica. Built so a Redis that hangs or is gone costs a caller
at most IMGCDN_STATE_TIMEOUT_S: redis-py 8's default retry policy turned a 0.5 s socket
timeout into 7.8 s against a paused Redis (docs/design/jobs.md), so one retry, no backoff.
Callers turn `redis.exceptions.RedisError` into StateUnavailable (503 with Retry-After);
the delivery path (/t/, /r/) never touches Redis.
"""

from __future__ import annotations

from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from server.errors import StateUnavailable


def connect(url: str, timeout_s: float) -> Redis:
    """A pooled client for `url` (connections open lazily, on first use)."""
    return Redis.from_url(
        url,
        socket_timeout=timeout_s,
        socket_connect_timeout=timeout_s,
        # redis.asyncio's Retry: the synchronous one (redis.retry) returns the coroutine
        # without awaiting it, so it never retried. The one retry matters after a Redis
        # restart: each pooled connection's next command fails once and reconnects.
        retry=Retry(NoBackoff(), 1),
        health_check_interval=30,
    )


async def ping(client: Redis) -> None:
    """Raise StateUnavailable unless Redis answers PING now (/readyz)."""
    try:
        await client.ping()
    except (RedisError, OSError) as exc:
        raise StateUnavailable(f"redis is unreachable: {type(exc).__name__}") from None
