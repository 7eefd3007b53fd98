"""Result URLs (/r/) through the repo's nginx.conf, with Debian's real nginx in front of a
real imgcdn (the fixtures of tests/test_nginx.py): served and cached, revalidated with a
304, and refused once expired, never from the cache.

The results are saved by a second runtime on the same data dir and signing key, as another
worker of the same server would.
"""

from __future__ import annotations

import asyncio
import contextlib
import time

import httpx2 as httpx
import pytest
from conftest import wait_until
from test_nginx import Edge, edge, nginx_binary, ports, settings, upstream  # noqa: F401
from test_results import jpeg

from server import results
from server.runtime import Runtime
from server.settings import Settings

RID = "bmdpbngtcmVzdWx0LTAxMjM0NTY3"


def saved_url(settings: Settings, result_id: str, now: float | None = None) -> str:  # noqa: F811
    """Save a result from another runtime on this data dir; its signed URL's path+query.
    `now` sets the store's clock for the save (and so the expiry)."""

    async def save() -> str:
        async with contextlib.AsyncExitStack() as stack:
            rt = await Runtime.start(settings, stack)
            result = await results.save(rt, result_id, "jpeg", jpeg(), 40, 30)
            url = results.public_url(rt, "http://x", result)
        return httpx.URL(url).raw_path.decode()

    if now is None:
        return asyncio.run(save())
    real = results.clock
    results.clock = lambda: now
    try:
        return asyncio.run(save())
    finally:
        results.clock = real


def test_a_result_url_is_served_through_nginx_then_from_its_cache(
    edge: Edge,  # noqa: F811
    settings: Settings,  # noqa: F811
    upstream,  # noqa: F811
):
    url = saved_url(settings, RID)
    first = edge.get(url, headers={"X-Correlation-ID": "result-edge-1"})
    second = edge.get(url)
    assert first.status_code == second.status_code == 200, first.text
    assert first.headers["x-cache-status"] == "MISS"
    assert second.headers["x-cache-status"] == "HIT"
    assert first.content == second.content == jpeg()
    assert first.headers["content-type"] == "image/jpeg"
    assert first.headers["etag"] == f'"{RID}.jpg"'
    assert first.headers["cache-control"].startswith("public, max-age=")
    assert first.headers["x-correlation-id"] == "result-edge-1"
    assert len(upstream("/r/")) == 1
    head = httpx.head(edge.url + url, timeout=30)
    assert head.status_code == 200 and head.content == b""


def test_a_result_revalidated_through_nginx_is_a_304(edge: Edge, settings: Settings):  # noqa: F811
    url = saved_url(settings, RID)
    etag = f'"{RID}.jpg"'
    cold = edge.get(url, headers={"If-None-Match": etag})
    warm = edge.get(url, headers={"If-None-Match": etag})
    assert cold.status_code == warm.status_code == 304
    assert cold.content == warm.content == b""
    assert warm.headers["x-cache-status"] == "HIT"


def test_an_expired_result_url_is_refused_through_nginx_and_never_cached(
    edge: Edge,  # noqa: F811
    settings: Settings,  # noqa: F811
    upstream,  # noqa: F811
):
    ttl = settings.result_ttl_s
    url = saved_url(settings, RID, now=time.time() - ttl + 2)  # 2 s left
    first = edge.get(url)
    assert first.status_code == 200 and first.headers["x-cache-status"] == "MISS"
    assert int(first.headers["cache-control"].rpartition("=")[2]) <= 2
    answers: list[httpx.Response] = []

    def refused() -> bool:
        answers.append(edge.get(url))
        return answers[-1].status_code != 200

    wait_until(refused)
    assert answers[-1].status_code == 403
    assert answers[-1].json()["error"]["code"] == "url_expired"
    assert {r.headers["x-cache-status"] for r in answers[:-1]} <= {"HIT"}
    again = edge.get(url)
    assert again.status_code == 403 and again.headers["x-cache-status"] != "HIT"
    assert again.headers["cache-control"] == "no-store"


def test_a_tampered_result_url_is_refused_through_nginx(edge: Edge, settings: Settings):  # noqa: F811
    url = saved_url(settings, RID)
    forged = url.replace("exp=", "exp=9")
    for _ in range(2):  # a 403 is never kept
        r = edge.get(forged)
        assert r.status_code == 403 and r.json()["error"]["code"] == "invalid_signature"
        assert r.headers["x-cache-status"] != "HIT"


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE"])
def test_result_urls_take_only_get_and_head_through_nginx(edge: Edge, method: str):  # noqa: F811
    r = httpx.request(method, f"{edge.url}/r/{RID}.jpg?exp=1&sig=x", timeout=30)
    assert r.status_code == 405 and r.headers["allow"] == "GET, HEAD"
