"""The variant store's upkeep: scanning it in bounded steps, and which variants a trim
deletes (the trim itself, on both backends, is in test_s3.py); its local reads."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from server.caching import oldest
from server.errors import StorageUnavailable
from server.storage import files, local
from server.storage.local import LocalStorage


def test_a_scan_finds_every_object_in_nested_and_crowded_folders(tmp_path: Path, monkeypatch):
    monkeypatch.setattr(files, "SCAN_BATCH", 7)  # many steps through one folder
    storage = LocalStorage(tmp_path)
    written = {f"variants/a/_/k{i}": i for i in range(30)}
    written |= {f"variants/b/card/k{i}": 100 + i for i in range(5)}

    async def scenario() -> list[tuple[str, int, float]]:
        for key, size in written.items():
            await storage.put_object(key, os.urandom(size))
        crowded = tmp_path / "objects" / "variants" / "a" / "_"
        (crowded / ".tmp-half-written").write_bytes(b"x")  # never listed
        return [entry async for entry in storage.scan_sizes("variants/")]

    found = asyncio.run(scenario())
    assert sorted((key, size) for key, size, _ in found) == sorted(written.items())
    assert all(mtime > 0 for _, _, mtime in found)
    assert asyncio.run(_collect(storage.scan_sizes("nothing-here/"))) == []


async def _collect(entries: AsyncIterator[tuple[str, int, float]]) -> list[object]:
    return [entry async for entry in entries]


def test_oldest_keeps_only_the_oldest_entries_that_cover_the_excess():
    async def entries() -> AsyncIterator[tuple[str, int, float]]:
        for key, size, mtime in [("c", 30, 3.0), ("a", 10, 1.0), ("e", 50, 5.0), ("b", 20, 2.0)]:
            yield key, size, mtime
        yield "d", 40, 4.0

    def run(excess: int) -> list[str]:
        return asyncio.run(oldest(entries(), excess))

    assert run(1) == ["a"]
    assert run(10) == ["a"]
    assert run(11) == ["a", "b"]
    assert run(60) == ["a", "b", "c"]
    assert run(61) == ["a", "b", "c", "d"]
    assert run(10_000) == ["a", "b", "c", "d", "e"]  # everything, and no more


def test_a_local_store_miss_is_answered_without_a_thread(tmp_path: Path, monkeypatch):
    storage = LocalStorage(tmp_path)

    async def scenario() -> tuple[bytes | None, bytes | None]:
        await storage.put_object("variants/a/_/here", b"variant")
        with monkeypatch.context() as m:
            # Every cold render looks twice; a hop to a thread costs ~40x the lookup.
            m.setattr(local.asyncio, "to_thread", None)
            missing = await storage.get_object("variants/a/_/not-here")
        return missing, await storage.get_object("variants/a/_/here")

    assert asyncio.run(scenario()) == (None, b"variant")


def test_a_failed_object_write_leaves_neither_the_object_nor_a_temp_file(
    tmp_path: Path, monkeypatch
):
    storage = LocalStorage(tmp_path)
    asyncio.run(storage.put_object("variants/a/_/first", b"first"))  # the folder exists

    def full(fd: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(local.os, "fsync", full)
    with pytest.raises(StorageUnavailable, match="write failed: No space left"):
        asyncio.run(storage.put_object("variants/a/_/second", b"second"))
    with pytest.raises(StorageUnavailable, match="write failed: No space left"):
        asyncio.run(storage.put_object("variants/b/_/third", b"third"))  # a new folder
    left = sorted(p.name for p in (tmp_path / "objects" / "variants").rglob("*") if p.is_file())
    assert left == ["first"]
