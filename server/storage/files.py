"""The local backend's file primitives: atomic writes (plain and create-only), capped reads,
batched folder scans, and the one place an OSError of a write becomes StorageUnavailable."""

from __future__ import annotations

import contextlib
import os
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

from server import metrics
from server.errors import StorageUnavailable, TooLarge

SCAN_BATCH = 1000  # objects a scan step reads


def scan_batch(
    listing: Iterator[os.DirEntry[str]], base: Path, folders: list[Path]
) -> list[tuple[str, int, float]]:
    """Up to SCAN_BATCH files' (key, size, mtime) from `listing`; its folders go on
    `folders` for later. Empty when the listing is done."""
    found: list[tuple[str, int, float]] = []
    skip = len(str(base)) + 1  # plain strings: pathlib would intern every key's parts
    for entry in listing:
        if entry.is_dir(follow_symlinks=False):
            folders.append(Path(entry.path))
        elif not entry.name.startswith(".tmp-"):
            with contextlib.suppress(FileNotFoundError):  # trimmed or purged meanwhile
                stat = entry.stat(follow_symlinks=False)
                found.append((entry.path[skip:], stat.st_size, stat.st_mtime))
        if len(found) >= SCAN_BATCH:
            break
    return found


@contextlib.contextmanager
def writing(op: str) -> Iterator[None]:
    """A failed write (a full disk, a read-only or broken data dir) is storage being
    unavailable, a 503 with Retry-After, as a failed read is: never a 500."""
    try:
        yield
    except OSError as exc:
        metrics.storage_error(op)
        raise StorageUnavailable(f"storage write failed: {exc.strerror or exc}") from exc


def read_capped(path: Path, max_bytes: int, op: str, what: str) -> bytes | None:
    """A file's bytes (None when absent), refused past `max_bytes` without reading it all."""
    try:
        with path.open("rb") as f:
            data = f.read(max_bytes + 1)
    except FileNotFoundError:
        return None
    except OSError as exc:
        metrics.storage_error(op)
        raise StorageUnavailable(f"storage read failed: {exc.strerror}") from exc
    if len(data) > max_bytes:
        raise TooLarge(f"{what} is larger than {max_bytes} bytes")
    return data


def atomic_write(path: Path, data: bytes) -> None:
    """Write to a temp file beside `path`, fsync, then rename over it: all or nothing.

    In five system calls, not mkstemp's and a buffered file's nine: under load each one can
    hand the GIL to a render thread and wait to get it back (bench: context switches per
    cold render). The temp name is this thread's own, so it needs no random part."""
    tmp = f"{path.parent}/.tmp-{os.getpid()}-{threading.get_ident()}-{path.name}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    try:
        try:
            done = os.write(fd, data)
            while done < len(data):  # a short write: only on signals or a full disk
                done += os.write(fd, memoryview(data)[done:])
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def exclusive_write(path: Path, data: bytes) -> bool:
    """Create `path` holding `data`, all or nothing, only if it does not exist: False (and
    nothing written) when it does. The bytes go to a temp file beside it first, then are
    linked in: link(2) fails if the name exists, atomically across processes, and a reader
    never sees the file half-written (as an O_EXCL create it then wrote to would be)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.link(tmp, path)
        return True
    except FileExistsError:
        return False
    finally:
        os.unlink(tmp)
