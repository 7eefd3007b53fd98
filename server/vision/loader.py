"""A per-process lazy model loader: `load(name, build)` builds on first use, once per
worker, thread-safe (render threads may ask together), so the delivery path never loads a
model it does not use.

Private stand-in for server/vision/models.py (owned by the faces work, same signature):
switch the imports to it when it lands and delete this file.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")
_built: dict[str, Any] = {}
_lock = threading.Lock()


def load(name: str, build: Callable[[], T]) -> T:
    """The model called `name`, built by `build()` the first time it is asked for."""
    found = _built.get(name)
    if found is None:
        with _lock:  # one build per process, even when two threads ask at once
            found = _built.get(name)
            if found is None:
                found = _built[name] = build()
    result: T = found
    return result


def loaded() -> frozenset[str]:
    """The names built so far in this process (tests: the delivery path loads nothing)."""
    return frozenset(_built)
