"""The per-process objects the routes share, built once by app.py's lifespan."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from cachetools import LRUCache, TTLCache
from redis.asyncio import Redis

from server import redisconn
from server.caching import OriginalsCache, SingleFlight, Variant, VariantCache, VariantStore
from server.errors import StorageUnavailable
from server.imaging.inspect import SourceLimits
from server.imaging.options import RenderOptions
from server.imaging.vips import RenderPool
from server.keyfields import FieldDefaults
from server.keys import KeyRegistry
from server.results import Result, ResultStore
from server.settings import Settings
from server.spec import Limits
from server.state.base import StateStore
from server.state.local import SqliteState
from server.state.redis import RedisState
from server.storage.base import AssetMeta, Storage
from server.storage.local import LocalStorage
from server.storage.s3 import S3Storage
from server.templates import TemplateRegistry

if TYPE_CHECKING:  # jobs/engine.py runs process.py, which needs this module
    from server.jobs.engine import Engine
    from server.jobs.store import JobStore

log = logging.getLogger("imgcdn")


@dataclass
class Runtime:
    settings: Settings
    storage: Storage
    pool: RenderPool
    admin_tokens: tuple[bytes, ...]
    variants: VariantCache
    templates: TemplateRegistry
    store: VariantStore
    originals: OriginalsCache | None
    keys: KeyRegistry
    state: StateStore
    # IMGCDN_REDIS_URL's client (redisconn.py), shared by the state, the jobs and the queue;
    # None when embedded. The delivery path never uses it.
    redis: Redis | None = None
    flights: SingleFlight[tuple[Variant, str]] = field(default_factory=SingleFlight)
    # Identical processing requests in flight share one render and one result (process.py).
    result_flights: SingleFlight[Result] = field(default_factory=SingleFlight)
    meta_cache: TTLCache[str, AssetMeta] = field(
        default_factory=lambda: TTLCache(maxsize=10_000, ttl=2.0)
    )
    # The last metadata seen per asset, kept past its TTL: when storage fails, variants
    # still in memory are served from it (stale-if-error) instead of a 503.
    last_meta: LRUCache[str, AssetMeta] = field(default_factory=lambda: LRUCache(maxsize=100_000))

    limits: Limits = field(init=False)
    source_limits: SourceLimits = field(init=False)
    render_options: RenderOptions = field(init=False)
    results: ResultStore = field(init=False)
    # The job engine (SPEC §8: batches) and its store; built by `start`, its receiver
    # started by app.py's lifespan once the Runtime exists.
    engine: Engine = field(init=False)
    jobs: JobStore = field(init=False)

    def __post_init__(self) -> None:
        # Derived once per process: the request path reads them on every request.
        s = self.settings
        self.limits = Limits(s.max_output_side, s.max_output_pixels)
        self.source_limits = SourceLimits(s.max_source_bytes, s.max_source_pixels, s.max_frames)
        self.render_options = RenderOptions(
            shrink_rule=s.shrink_on_load,
            jpeg_preset=s.jpeg_preset,
            avif_effort=s.avif_effort,
            max_side=s.max_output_side,
            max_pixels=s.max_output_pixels,
            bg_model=s.bg_model,
        )
        self.results = ResultStore(s)

    @classmethod
    async def start(cls, settings: Settings, stack: contextlib.AsyncExitStack) -> Runtime:
        """Everything a process needs, opened on `stack` (closed when the app stops)."""
        storage: Storage
        originals = None
        if settings.storage.startswith("s3://"):
            storage = await stack.enter_async_context(
                S3Storage.connect(
                    settings.storage,
                    settings.s3_endpoint,
                    settings.s3_region,
                    settings.s3_timeout_s,
                )
            )
            if settings.originals_cache_bytes:
                originals = OriginalsCache(
                    settings.data_dir / "cache" / "originals", settings.originals_cache_bytes
                )
        else:
            storage = LocalStorage(settings.data_dir)
        tokens = settings.admin_tokens or (admin_token_file(settings.data_dir),)
        redis = None
        if settings.redis_url:
            redis = redisconn.connect(settings.redis_url, settings.state_timeout_s)
            stack.push_async_callback(redis.aclose)  # closed after everything that uses it
        state: StateStore
        if redis is not None:  # replicas share limits and idempotency records there
            state = RedisState(redis, settings.state_timeout_s)
        else:
            state = SqliteState(settings.data_dir / "state.sqlite3", settings.state_timeout_s)
        # Closed last: requests still finishing during shutdown record their answers.
        stack.push_async_callback(state.close)
        store = VariantStore(storage, settings.variant_store, settings.variant_store_bytes)
        # Unwound after the render pool (in-flight renders finish first) and before the S3
        # client closes: the store writes that follow responses land before the exit.
        stack.push_async_callback(store.writes.drain)
        if store.enabled and store.max_bytes:
            sweeper = asyncio.create_task(_sweep(store))
            stack.callback(sweeper.cancel)
        pool = RenderPool(settings.render_threads, settings.max_queue, settings.render_timeout_s)
        flights: SingleFlight[tuple[Variant, str]] = SingleFlight()
        result_flights: SingleFlight[Result] = SingleFlight()

        async def stop_rendering() -> None:
            # In-flight renders finish (graceful), off the loop: a finished render's flight
            # must run on to hand its store write over before the drain above looks, and a
            # processing render on to save its result.
            await asyncio.to_thread(pool.shutdown)
            await flights.settle()
            await result_flights.settle()

        stack.push_async_callback(stop_rendering)
        key_defaults = FieldDefaults(
            settings.key_rate_per_s, settings.key_burst, settings.key_daily_quota or None
        )
        rt = cls(
            settings=settings,
            storage=storage,
            pool=pool,
            admin_tokens=tuple(t.encode() for t in tokens),
            variants=VariantCache(settings.memory_cache_bytes),
            templates=TemplateRegistry(storage, settings.meta_ttl_s),
            store=store,
            originals=originals,
            keys=KeyRegistry(storage, settings.meta_ttl_s, key_defaults),
            state=state,
            redis=redis,
            flights=flights,
            result_flights=result_flights,
            meta_cache=TTLCache(maxsize=10_000, ttl=max(settings.meta_ttl_s, 1e-6)),
        )
        from server.jobs.engine import Engine  # see TYPE_CHECKING above

        rt.engine = Engine.build(settings, redis)
        rt.jobs = rt.engine.store
        # Unwound before the render pool stops (pushed after it), but after the receiver
        # (app.py pushes that later still): the broker hands back its claims, then the
        # store closes.
        stack.push_async_callback(rt.engine.close)
        return rt


async def _sweep(store: VariantStore, every_s: float = 60.0) -> None:
    """Keep the variant store within its bound. Every worker sweeps; deletes are idempotent."""
    while True:
        try:
            deleted = await store.trim()
            if deleted:
                log.info("variant store: trimmed %d least recently written variants", deleted)
        except StorageUnavailable:
            log.warning("variant store: storage unavailable, trim skipped")
        await asyncio.sleep(every_s)


def read_admin_token(data_dir: Path) -> str | None:
    """The generated admin token, if the server made one (for the CLI)."""
    try:
        return (data_dir / "admin-token").read_text(encoding="ascii").strip() or None
    except OSError:
        return None


def admin_token_file(data_dir: Path) -> str:
    """The generated admin token: created once (mode 0600), then read. Never logged."""
    path = data_dir / "admin-token"
    data_dir.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        token = path.read_text(encoding="ascii").strip()
        if len(token) < 16:
            raise ValueError(
                f"{path}: token too short; delete the file to make a new one"
            ) from None
        return token
    token = secrets.token_urlsafe(32)
    with os.fdopen(fd, "w", encoding="ascii") as f:
        f.write(token + "\n")
    log.warning("generated an admin token in %s (set IMGCDN_ADMIN_TOKENS to choose your own)", path)
    return token
