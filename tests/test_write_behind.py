"""The variant store's write after the response (server/writebehind.py): a cold answer does
not wait for it, the render lock is held until it lands (so another process waiting for the
variant reads it from the store and renders nothing), a failed write is counted and never
seen by a client, past its bound a write is made before the response, and shutdown and
purges wait for the writes still pending.

The store's storage is a LocalStorage whose variant writes wait for a gate the test opens:
a seam we own (Runtime builds it), so the rest is the real app on real libvips."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from conftest import IMAGES, upload, wait_until
from starlette.testclient import TestClient
from test_metrics import scrape

from server import assets, runtime, variants
from server.app import create_app
from server.caching import Variant, VariantStore
from server.errors import StorageUnavailable
from server.imaging import pipeline
from server.imaging.vips import RenderPool
from server.settings import Settings
from server.spec import parse_params
from server.storage.local import LocalStorage
from server.templates import NO_TEMPLATE
from server.writebehind import WriteBehind

URL = "/t/_/photo.jpg?w=120"
FAILURES = "imgcdn_variant_store_write_failures_total"


class GatedStorage(LocalStorage):
    """Local storage whose variant writes wait for `gate` (or fail, with `fail`), and which
    records the render locks it was refused."""

    def __init__(self, root: Path, gate: threading.Event | None, fail: bool = False) -> None:
        super().__init__(root)
        self.gate, self.fail = gate, fail
        self.writing = threading.Event()  # a variant write has begun
        self.written: list[str] = []
        self.refused: list[str] = []

    async def put_object(self, key: str, data: bytes, exclusive: bool = False) -> bool:
        if key.startswith("variants/"):
            self.writing.set()
            if self.fail:
                raise StorageUnavailable("storage write failed: No space left on device")
            if self.gate is not None and not await asyncio.to_thread(self.gate.wait, 10):
                raise StorageUnavailable("the test never opened the gate")
        done = await super().put_object(key, data, exclusive)
        self.written.append(key)
        return done

    async def lock(self, name: str, ttl_s: float) -> bool:
        taken = await super().lock(name, ttl_s)
        if not taken:
            self.refused.append(name)
        return taken


@pytest.fixture
def storages(monkeypatch: pytest.MonkeyPatch) -> list[LocalStorage]:
    """Storages for the next apps to start, in order (Runtime.start builds one each)."""
    queue: list[LocalStorage] = []
    monkeypatch.setattr(runtime, "LocalStorage", lambda root: queue.pop(0))
    return queue


@pytest.fixture
def renders(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """One entry per libvips render in this process, whichever app ran it."""
    done: list[float] = []
    real = pipeline.render

    def counted(*args, **kwargs):  # type: ignore[no-untyped-def]
        done.append(time.monotonic())
        return real(*args, **kwargs)

    monkeypatch.setattr(pipeline, "render", counted)
    return done


def stored(settings: Settings, etag: str) -> Variant | None:
    """The variant of this ETag in the store, read as another process would."""
    store = VariantStore(LocalStorage(settings.data_dir), enabled=True)
    return asyncio.run(store.get("photo.jpg", "_", etag.strip('"')))


def lock_is_free(settings: Settings, etag: str) -> bool:
    """Whether another process could take this variant's render lock now."""
    store = VariantStore(LocalStorage(settings.data_dir), enabled=True)

    async def take_and_release() -> bool:
        taken = await store.lock(etag.strip('"'), 30)
        await store.unlock(etag.strip('"'))
        return taken

    return asyncio.run(take_and_release())


def test_a_cold_answer_does_not_wait_for_its_store_write_and_a_waiting_server_renders_nothing(
    make_client: Callable[..., TestClient], settings: Settings, storages, renders
):
    gate = threading.Event()
    first = GatedStorage(settings.data_dir, gate)
    second = GatedStorage(settings.data_dir, None)
    storages += [first, second]
    one, two = make_client(), make_client()  # two processes' worth, on one data dir
    upload(one, "photo.jpg", "photo.jpg")

    answer = one.get(URL)
    assert answer.status_code == 200 and answer.headers["x-cache"] == "miss"
    # Answered while its write waits at the gate; the render lock is still held.
    assert first.writing.is_set() and first.written == []
    with ThreadPoolExecutor(1) as pool:
        later = pool.submit(two.get, URL)
        wait_until(lambda: len(second.refused) > 0)  # the second finds the lock held...
        gate.set()
        waited = later.result(timeout=30)
    # ...and, once the write lands, reads the variant from the store.
    assert waited.status_code == 200 and waited.headers["x-cache"] == "hit-store"
    assert waited.content == answer.content
    assert len(renders) == 1
    assert lock_is_free(settings, answer.headers["etag"])


def test_a_failed_store_write_is_counted_and_the_next_request_renders_again(
    make_client: Callable[..., TestClient], settings: Settings, storages, renders, caplog
):
    storages.append(GatedStorage(settings.data_dir, None, fail=True))
    client = make_client(memory_cache_bytes=0)  # so the second request misses too
    upload(client, "photo.jpg", "photo.jpg")
    before = scrape(client)

    for attempt in (1, 2):
        r = client.get(URL)
        assert r.status_code == 200 and r.headers["x-cache"] == "miss"
        wait_until(lambda n=attempt: scrape(client).grew(before, FAILURES) == n)  # type: ignore[misc]
        # The write failed; the lock was let go all the same.
        assert lock_is_free(settings, r.headers["etag"])
    assert len(renders) == 2
    assert stored(settings, r.headers["etag"]) is None
    assert "variant store write of" in caplog.text and "No space left on device" in caplog.text


def test_shutdown_waits_for_the_store_writes_still_pending(
    settings: Settings, storages, monkeypatch: pytest.MonkeyPatch
):
    gate, stopping = threading.Event(), threading.Event()
    storage = GatedStorage(settings.data_dir, gate)
    storages.append(storage)
    real_shutdown = RenderPool.shutdown

    def shutdown(pool: RenderPool) -> None:  # the app's exit has begun
        real_shutdown(pool)
        stopping.set()

    monkeypatch.setattr(RenderPool, "shutdown", shutdown)
    client = TestClient(create_app(settings))
    client.__enter__()
    upload(client, "photo.jpg", "photo.jpg")
    answer = client.get(URL)
    assert answer.status_code == 200 and storage.written == []

    exiting = threading.Thread(target=client.__exit__, args=(None, None, None))
    exiting.start()
    assert stopping.wait(30)
    gate.set()  # only now can the write land: the exit must wait for it
    exiting.join(30)
    assert not exiting.is_alive()
    assert stored(settings, answer.headers["etag"]) is not None
    assert lock_is_free(settings, answer.headers["etag"])


@pytest.mark.parametrize(
    ("writes", "sizes"),
    [(WriteBehind(max_pending=1), (10, 10)), (WriteBehind(max_bytes=100), (60, 60))],
    ids=["count", "bytes"],
)
def test_past_its_bound_a_write_is_made_before_submit_returns(
    writes: WriteBehind, sizes: tuple[int, int]
):
    async def scenario() -> list[int]:
        gate, landed = asyncio.Event(), []

        async def write(n: int) -> None:
            await gate.wait()
            landed.append(n)

        await writes.submit(sizes[0], lambda: write(1), "first")  # returns at once
        assert len(writes) == 1
        second = asyncio.create_task(writes.submit(sizes[1], lambda: write(2), "second"))
        for _ in range(10):
            await asyncio.sleep(0)  # let it run as far as it can
        assert not second.done() and len(writes) == 1  # made inline: it waits
        gate.set()
        await second
        await writes.drain()
        assert len(writes) == 0 and writes.pending_bytes == 0
        return landed

    assert sorted(asyncio.run(scenario())) == [1, 2]


def test_a_purge_waits_for_the_writes_still_pending(tmp_path: Path):
    storage = GatedStorage(tmp_path, threading.Event())
    store = VariantStore(storage, enabled=True)
    variant = Variant(b"jpeg bytes", "image/jpeg", 1, 1, asset_id="a.jpg")

    async def scenario() -> Variant | None:
        assert await store.lock("k", 30)
        await store.put_then_unlock("k", variant)  # pending, at the gate
        purging = asyncio.create_task(store.purge(asset_id="a.jpg"))
        await asyncio.to_thread(storage.writing.wait, 10)
        assert storage.gate is not None
        storage.gate.set()
        await purging
        await store.writes.drain()
        return await store.get("a.jpg", "_", "k")

    assert asyncio.run(scenario()) is None  # the purge came last, so nothing is left


def test_a_render_running_at_shutdown_is_stored_though_its_client_left(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
):
    # The render pool used to be shut down on the loop: a render finishing then could not
    # hand its write over before the drain looked, and was cancelled with the loop.
    gate, rendering, stopping = threading.Event(), threading.Event(), threading.Event()
    real_render, real_shutdown = pipeline.render, RenderPool.shutdown

    def slow_render(*args: object, **kwargs: object) -> pipeline.Rendered:
        rendering.set()
        gate.wait(30)
        return real_render(*args, **kwargs)  # type: ignore[arg-type]

    def shutdown(pool: RenderPool) -> None:
        stopping.set()  # the exit has begun: only now may the render finish
        real_shutdown(pool)

    monkeypatch.setattr(pipeline, "render", slow_render)
    monkeypatch.setattr(RenderPool, "shutdown", shutdown)
    threading.Thread(target=lambda: stopping.wait(30) and gate.set(), daemon=True).start()

    async def serve_and_stop() -> str:
        async with contextlib.AsyncExitStack() as stack:
            rt = await runtime.Runtime.start(settings, stack)
            await assets.put_asset(rt, "photo.jpg", (IMAGES / "photo.jpg").read_bytes())
            spec = parse_params({"w": "120"}, rt.limits)
            resolved = await variants.resolve(
                rt, "photo.jpg", NO_TEMPLATE, spec, "", variants.Timings()
            )
            request = asyncio.create_task(variants.fetch(rt, resolved, spec, variants.Timings()))
            assert await asyncio.to_thread(rendering.wait, 30)
            request.cancel()  # the client went away; its flight renders on
        return resolved.key

    key = asyncio.run(serve_and_stop())
    assert stored(settings, key) is not None
    assert lock_is_free(settings, key)
