"""`imgcdn serve` with IMGCDN_REDIS_URL, against a real redis-server that hangs (SIGSTOP):
delivery keeps serving from storage, the keyed API answers 503 state_unavailable with
Retry-After within the state timeout, /readyz says Redis is down; and all of it recovers
when Redis answers again (SIGCONT). And RedisState on a Redis killed and restarted."""

from __future__ import annotations

import asyncio
import base64
import time
from concurrent.futures import ThreadPoolExecutor

import httpx2 as httpx
from conftest import AUTH, IMAGES, TOKEN, error_body, wait_until
from test_server import serving

from server import redisconn
from server.state.base import Policy
from server.state.redis import RedisState

STATE_TIMEOUT_S = 0.5
P3 = base64.b64encode((IMAGES / "p3.jpg").read_bytes()).decode()  # 400 x 300
RESIZE = {"image": {"base64": P3}, "width": 40}


def test_a_hung_redis_never_stops_delivery_and_the_keyed_api_answers_503_until_it_is_back(
    tmp_path, own_redis
):
    settings = {
        "IMGCDN_REDIS_URL": own_redis.url,
        "IMGCDN_ADMIN_TOKENS": TOKEN,
        "IMGCDN_STATE_TIMEOUT_S": str(STATE_TIMEOUT_S),
    }
    with (
        serving(tmp_path, **settings) as served,
        httpx.Client(base_url=served.base, timeout=30) as http,
    ):
        put = http.put(
            "/v1/assets/photo.jpg", content=(IMAGES / "photo.jpg").read_bytes(), headers=AUTH
        )
        assert put.status_code == 201, put.text
        made = http.post("/v1/keys", json={"name": "app"}, headers=AUTH)
        key = {"Authorization": f"Bearer {made.json()['key']}"}
        for n in range(7):
            assert http.post("/v1/keys", json={"name": f"more-{n}"}, headers=AUTH).is_success
        assert http.post("/v1/image/resize", json=RESIZE, headers=key).status_code == 200
        assert http.get("/t/_/photo.jpg?w=100").status_code == 200
        ready = http.get("/readyz")
        assert ready.status_code == 200 and ready.json()["redis"] == "ready"

        own_redis.pause()
        try:
            # Delivery: a variant served before and one never rendered, both from storage.
            for url in ("/t/_/photo.jpg?w=100", "/t/_/photo.jpg?w=120"):
                started = time.monotonic()
                r = http.get(url, timeout=10)
                assert r.status_code == 200 and r.headers["content-type"] == "image/jpeg"
                assert time.monotonic() - started < 5

            def keyed_call() -> tuple[httpx.Response, float]:
                started = time.monotonic()
                r = http.post("/v1/image/resize", json=RESIZE, headers=key)
                return r, time.monotonic() - started

            with ThreadPoolExecutor(4) as threads:  # several at once, none waits longer
                answers = list(threads.map(lambda _: keyed_call(), range(4)))
            for r, took in answers:
                assert error_body(r, 503)["code"] == "state_unavailable"
                assert r.headers["retry-after"] == "2"
                assert took < STATE_TIMEOUT_S + 1.5
            # The admin API answers; key listings only lack the last use, found in Redis.
            started = time.monotonic()
            listed = http.get("/v1/keys", headers=AUTH)
            assert listed.status_code == 200 and len(listed.json()["items"]) == 8
            assert {k["last_used_at"] for k in listed.json()["items"]} == {None}
            assert time.monotonic() - started < STATE_TIMEOUT_S + 1.5
            down = http.get("/readyz")
            assert error_body(down, 503)["code"] == "state_unavailable"
            assert own_redis.url not in down.text
            # A probe of the delivery path leaves Redis out (k8s/ uses it).
            assert http.get("/readyz?skip=redis").status_code == 200
            assert error_body(http.get("/readyz?skip=s3"), 400)["param"] == "skip"
        finally:
            own_redis.resume()

        wait_until(lambda: http.get("/readyz").status_code == 200, seconds=20)
        r = http.post("/v1/image/resize", json=RESIZE, headers=key)
        assert r.status_code == 200 and "ratelimit-remaining" in r.headers
        assert served.stop() == 0
    assert own_redis.url not in served.log()


def test_after_a_redis_restart_every_pooled_connection_answers_its_next_call(own_redis):
    async def main() -> None:
        client = redisconn.connect(own_redis.url, 2.0)
        state = RedisState(client, 2.0)
        policy = Policy(0.001, 20, None)
        try:
            # Eight connections in the pool, all open to the Redis about to die.
            assert all(
                c.allowed
                for c in await asyncio.gather(*(state.charge("k", policy) for _ in range(8)))
            )
            own_redis.kill()
            own_redis.start()  # its append-only file brings the key's state back
            # Each stale connection fails once, reconnects and retries (redisconn's Retry).
            charges = await asyncio.gather(*(state.charge("k", policy) for _ in range(8)))
            assert [c.allowed for c in charges] == [True] * 8
            assert min(c.remaining for c in charges) == 20 - 16
        finally:
            await client.aclose()

    asyncio.run(main())
