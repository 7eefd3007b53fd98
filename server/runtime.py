"""The per-process objects the routes share, built once by app.py's lifespan."""

from __future__ import annotations

import logging
import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path

from cachetools import TTLCache

from server.caching import SingleFlight, Variant, VariantCache
from server.imaging.inspect import SourceLimits
from server.imaging.options import RenderOptions
from server.imaging.vips import RenderPool
from server.settings import Settings
from server.spec import Limits
from server.storage.base import AssetMeta, Storage
from server.storage.local import LocalStorage
from server.templates import TemplateRegistry

log = logging.getLogger("imgcdn")


@dataclass
class Runtime:
    settings: Settings
    storage: Storage
    pool: RenderPool
    admin_tokens: tuple[bytes, ...]
    variants: VariantCache
    templates: TemplateRegistry
    flights: SingleFlight[Variant] = field(default_factory=SingleFlight)
    meta_cache: TTLCache[str, AssetMeta] = field(
        default_factory=lambda: TTLCache(maxsize=10_000, ttl=2.0)
    )

    limits: Limits = field(init=False)
    source_limits: SourceLimits = field(init=False)
    render_options: RenderOptions = field(init=False)

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
        )

    @classmethod
    def build(cls, settings: Settings) -> Runtime:
        storage = LocalStorage(settings.data_dir)
        tokens = settings.admin_tokens or (admin_token_file(settings.data_dir),)
        return cls(
            settings=settings,
            storage=storage,
            pool=RenderPool(settings.render_threads, settings.max_queue, settings.render_timeout_s),
            admin_tokens=tuple(t.encode() for t in tokens),
            variants=VariantCache(settings.memory_cache_bytes),
            templates=TemplateRegistry(storage, settings.meta_ttl_s),
            meta_cache=TTLCache(maxsize=10_000, ttl=max(settings.meta_ttl_s, 1e-6)),
        )


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
