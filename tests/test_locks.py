"""The render lock on the local folder (`LocalStorage.lock`): one holder across processes,
released when its holder dies, and a cold stampede over two `imgcdn serve` processes on
one data dir rendered once."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx2 as httpx
from conftest import IMAGES
from test_metrics import scrape
from test_server import Served, serving

from server.caching import VariantStore
from server.storage.local import LocalStorage

HOLD = """
import asyncio, sys
from pathlib import Path
from server.storage.local import LocalStorage

async def main() -> None:
    storage = LocalStorage(Path(sys.argv[1]))
    assert await storage.lock("render-k", 30)
    print("held", flush=True)
    await asyncio.sleep(3600)  # until killed

asyncio.run(main())
"""


def test_a_lock_has_one_holder_until_it_is_released(tmp_path: Path):
    one, two = LocalStorage(tmp_path), LocalStorage(tmp_path)  # as two workers would

    async def scenario() -> list[bool]:
        taken = [await one.lock("render-a", 30), await two.lock("render-a", 30)]
        taken.append(await one.lock("render-a", 30))  # not re-entrant either
        await one.unlock("render-a")
        taken.append(await two.lock("render-a", 30))
        await two.unlock("render-a")
        await two.unlock("render-a")  # releasing one not held is a no-op
        taken.append(await one.lock("render-a", 30))
        return taken

    assert asyncio.run(scenario()) == [True, False, False, True, True]


def test_locks_leave_no_file_behind_per_render(tmp_path: Path):
    storage = LocalStorage(tmp_path)
    store = VariantStore(storage, enabled=True)

    async def scenario() -> None:
        for i in range(50):
            assert await store.lock(f"key{i}", 30)
            await store.unlock(f"key{i}")

    asyncio.run(scenario())
    # A fixed set of lock files, reused: nothing is created or deleted per render.
    assert 0 < len(list((tmp_path / "locks").iterdir())) <= 50
    assert not (tmp_path / "objects").exists()


def test_a_lock_whose_holder_died_is_free_at_once(tmp_path: Path):
    with subprocess.Popen(
        [sys.executable, "-c", HOLD, str(tmp_path)], stdout=subprocess.PIPE, text=True
    ) as holder:
        try:
            assert holder.stdout is not None and holder.stdout.readline() == "held\n"
            storage = LocalStorage(tmp_path)
            assert asyncio.run(storage.lock("render-k", 30)) is False
        finally:
            holder.kill()
        holder.wait(timeout=10)
    # No expiry to wait out: the kernel drops a dead process's flock.
    assert asyncio.run(storage.lock("render-k", 30)) is True


def test_a_cold_stampede_over_two_processes_on_one_data_dir_renders_once(tmp_path: Path):
    first, second = tmp_path / "one", tmp_path / "two"
    first.mkdir()
    second.mkdir()
    (first / "data").mkdir()
    (second / "data").symlink_to(first / "data")
    # AVIF at the slowest effort: a render long enough for both processes to be asked.
    slow = {"IMGCDN_AVIF_EFFORT": "9"}
    with serving(first, **slow) as one, serving(second, **slow) as two:
        auth = {"Authorization": f"Bearer {one.token}"}
        body = (IMAGES / "photo.jpg").read_bytes()
        put = httpx.put(f"{one.base}/v1/assets/photo.jpg", content=body, headers=auth)
        assert put.status_code == 201, put.text
        urls = [f"{(one, two)[i % 2].base}/t/_/photo.jpg?w=321&fmt=avif" for i in range(24)]
        with ThreadPoolExecutor(24) as pool:
            answers = list(pool.map(lambda url: httpx.get(url, timeout=60), urls))
        assert [a.status_code for a in answers] == [200] * 24
        assert len({a.headers["etag"] for a in answers}) == 1
        # The process that did not render waited on the lock, then read the store.
        sources = {a.headers["x-cache"] for a in answers}
        assert {"miss", "hit-store"} <= sources <= {"miss", "hit-store", "hit-memory"}

        def renders(served: Served) -> float:
            with httpx.Client(base_url=served.base, timeout=10) as fresh:
                return scrape(fresh).value("imgcdn_render_seconds_count", format="avif")

        assert renders(one) + renders(two) == 1
