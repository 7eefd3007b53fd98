"""The Redis client every replica shares state through, against a real redis-server:
it answers, and a paused or stopped Redis is a StateUnavailable within the state timeout,
never a hang (redis-py's own retries would take several times as long)."""

from __future__ import annotations

import asyncio
import time

import pytest

from server import redisconn
from server.errors import StateUnavailable


def test_a_running_redis_answers_ping(redis_url):
    async def main() -> None:
        client = redisconn.connect(redis_url, 2.0)
        try:
            await redisconn.ping(client)
            await client.set("imgcdn:test", b"1")
            assert await client.get("imgcdn:test") == b"1"
        finally:
            await client.aclose()

    asyncio.run(main())


@pytest.mark.parametrize("fault", ["paused", "stopped"])
def test_a_redis_that_hangs_or_is_gone_is_state_unavailable_within_the_timeout(own_redis, fault):
    async def main() -> float:
        client = redisconn.connect(own_redis.url, 0.5)
        try:
            await redisconn.ping(client)  # a pooled connection is open before the fault
            own_redis.pause() if fault == "paused" else own_redis.stop()
            started = time.monotonic()
            with pytest.raises(StateUnavailable) as caught:
                await redisconn.ping(client)
            assert "redis" in caught.value.message and "127.0.0.1" not in caught.value.message
            return time.monotonic() - started
        finally:
            own_redis.resume()
            await client.aclose()

    # One try and one retry at 0.5 s each, plus slack for a loaded machine.
    assert asyncio.run(main()) < 3.0
