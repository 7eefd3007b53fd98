"""Per-process lazy model loading: each model is built on its first use, once per worker.

Weights live beside this module in `models/` (with their LICENSE and SOURCES.md); nothing is
downloaded at run time. A worker that never asks for a model never builds it, so the
delivery path pays only for the features a URL names.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar, cast

T = TypeVar("T")

MODELS_DIR = Path(__file__).with_name("models")

_lock = threading.Lock()
_loaded: dict[str, Any] = {}


def path(filename: str) -> Path:
    """A weights file shipped in server/vision/models/."""
    return MODELS_DIR / filename


def load(name: str, build: Callable[[], T]) -> T:
    """The model called `name`, built by `build()` the first time any thread asks.

    Render threads may ask at once: one builds under the lock, the others wait and share it.
    A build that raises leaves nothing behind, so the next call tries again.
    """
    found = _loaded.get(name)
    if found is not None:
        return cast(T, found)
    with _lock:
        found = _loaded.get(name)
        if found is None:
            found = build()
            _loaded[name] = found
        return cast(T, found)


def loaded() -> frozenset[str]:
    """Names of the models this process has built (for tests and /metrics)."""
    return frozenset(_loaded)
