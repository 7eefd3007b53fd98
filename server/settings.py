"""Settings: the only reader of `IMGCDN_*`. Frozen, validated at start, help text per field.

`Settings.load(environ, config_file)` parses every field or raises `SettingsError` with one
line naming the variable; `imgcdn serve` prints that line and exits. The settings table in
docs/operations.md is `imgcdn settings` (generated from FIELDS), so the two cannot drift.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Literal

from server.origins import SourceOrigin, ip_literal, refusal
from server.settingvalues import (
    base_url,
    flag,
    float_in,
    int_in,
    key_list,
    nonempty_path,
    one_of,
    onnx_file,
    optional_url,
    origin_list,
    redis_location,
    storage_url,
    token_list,
    url_list,
    webhook_secret,
)

ShrinkRule = Literal["fast", "quality"]
Unsigned = Literal["allow", "public-templates"]
JpegPreset = Literal["fast", "balanced", "small"]


class SettingsError(ValueError):
    """A bad setting: the message is one line naming the variable and what it accepts."""


MIB = 1024 * 1024


@dataclass(frozen=True, slots=True)
class Settings:
    data_dir: Path = Path("imgcdn-data")
    storage: str = "file"
    s3_endpoint: str = ""
    s3_region: str = "us-east-1"
    s3_timeout_s: float = 5.0
    variant_store: bool = True
    variant_store_bytes: int = 10 * 1024 * MIB
    originals_cache_bytes: int = 1024 * MIB
    edge_purge_urls: tuple[str, ...] = ()
    admin_tokens: tuple[str, ...] = ()
    signing_keys: tuple[str, ...] = ()
    unsigned: Unsigned | None = None  # None: allow without keys, else public-templates
    allow_private_sources: bool = False
    source_hosts: tuple[SourceOrigin, ...] = ()
    # Under the 10 s many clients and proxies give up at, with room to check and store.
    source_timeout_s: float = 8.0
    max_source_bytes: int = 50 * MIB
    max_source_pixels: int = 100_000_000
    max_output_side: int = 8192
    max_output_pixels: int = 40_000_000
    max_frames: int = 256
    render_timeout_s: float = 20.0
    max_queue: int = 64
    render_threads: int = 2 * (os.cpu_count() or 1)
    memory_cache_bytes: int = 256 * MIB
    meta_ttl_s: float = 2.0
    shrink_on_load: ShrinkRule = "fast"
    jpeg_preset: JpegPreset = "fast"
    avif_effort: int = 0
    log_level: str = "info"
    result_ttl_s: int = 3600
    public_url: str = ""
    key_rate_per_s: float = 10.0
    key_burst: int = 20
    key_daily_quota: int = 0  # 0: unlimited
    idempotency_max_bytes: int = 1 * MIB
    state_timeout_s: float = 2.0
    redis_url: str = ""
    # "": generated in <data dir>/webhook-secret (webhooks.py). Out of repr: never logged.
    webhook_secret: str = field(default="", repr=False)
    batch_max_items: int = 1000
    job_concurrency: int = 0  # 0: the process's render threads
    job_keep_s: float = 86_400.0
    bg_model: str = ""  # "": people by segmentation, products by the classical method

    @classmethod
    def load(cls, environ: Mapping[str, str], config_file: Path | None = None) -> Settings:
        """Settings from a config file (KEY=VALUE lines) overlaid by the environment."""
        raw: dict[str, str] = {}
        if config_file is not None:
            raw.update(_read_config(config_file))
        raw.update({k: v for k, v in environ.items() if k.startswith("IMGCDN_")})
        # The CLI's own variables (config file, server URL, admin token) are not settings.
        known = {spec.env for spec in FIELDS.values()} | {
            "IMGCDN_CONFIG",
            "IMGCDN_URL",
            "IMGCDN_TOKEN",
        }
        unknown = sorted(set(raw) - known)
        if unknown:
            raise SettingsError(f"{unknown[0]}: unknown setting (see `imgcdn settings`)")
        values: dict[str, Any] = {}
        for name, spec in FIELDS.items():
            if spec.env not in raw:
                continue
            try:
                values[name] = spec.parse(raw[spec.env].strip())
            except ValueError as exc:
                shown = spec.env if spec.secret else f"{spec.env}={raw[spec.env]!r}"
                raise SettingsError(f"{shown}: {exc}") from None
        if not values.get("allow_private_sources"):
            # An entry the SSRF guard refuses anyway would only ever answer 403: say so now.
            for origin in values.get("source_hosts", ()):
                address = ip_literal(origin.host)
                kind = refusal(address) if address is not None else None
                if kind is not None:
                    raise SettingsError(
                        f"IMGCDN_SOURCE_HOSTS: {origin} is {kind}, which source URLs never "
                        "reach (IMGCDN_ALLOW_PRIVATE_SOURCES=1 is for tests only)"
                    )
        return cls(**values)

    @property
    def unsigned_policy(self) -> Unsigned:
        if self.unsigned is not None:
            return self.unsigned
        return "public-templates" if self.signing_keys else "allow"


@dataclass(frozen=True, slots=True)
class FieldSpec:
    env: str
    parse: Callable[[str], Any]
    help: str
    secret: bool = False  # its value never appears in an error


FIELDS: dict[str, FieldSpec] = {
    "data_dir": FieldSpec(
        "IMGCDN_DATA_DIR", nonempty_path, "folder for originals, metadata and the admin token"
    ),
    "storage": FieldSpec(
        "IMGCDN_STORAGE",
        storage_url,
        "`file` (the data dir) or `s3://bucket/prefix` (credentials from the AWS_* variables)",
    ),
    "s3_endpoint": FieldSpec(
        "IMGCDN_S3_ENDPOINT",
        optional_url,
        "S3 endpoint URL for S3-compatible servers (MinIO, SeaweedFS); empty: AWS",
    ),
    "s3_region": FieldSpec("IMGCDN_S3_REGION", lambda raw: raw or "us-east-1", "S3 region"),
    "s3_timeout_s": FieldSpec(
        "IMGCDN_S3_TIMEOUT_S",
        float_in(0.2, 60),
        "deadline for one storage call, retries included: an outage answers 503 after it",
    ),
    "variant_store": FieldSpec(
        "IMGCDN_VARIANT_STORE",
        flag,
        "1: keep rendered variants in storage too (shared by every worker and replica)",
    ),
    "variant_store_bytes": FieldSpec(
        "IMGCDN_VARIANT_STORE_BYTES",
        int_in(0, 2**50),
        "bound on the variant store, trimmed every minute, least recently written first "
        "(0: unbounded, e.g. when an S3 lifecycle rule expires variants/)",
    ),
    "originals_cache_bytes": FieldSpec(
        "IMGCDN_ORIGINALS_CACHE_BYTES",
        int_in(0, 2**44),
        "bytes of originals fetched from S3 kept on local disk (<data dir>/cache)",
    ),
    "edge_purge_urls": FieldSpec(
        "IMGCDN_EDGE_PURGE_URLS",
        url_list,
        "comma-separated nginx purge endpoints that /v1/purge and deletes also call",
    ),
    "admin_tokens": FieldSpec(
        "IMGCDN_ADMIN_TOKENS",
        token_list,
        "comma-separated bearer tokens for /v1/ (>= 16 chars each); "
        "none: one is generated in <data dir>/admin-token",
        secret=True,
    ),
    "signing_keys": FieldSpec(
        "IMGCDN_SIGNING_KEYS",
        key_list,
        "comma-separated URL signing secrets (>= 32 chars each); all verify, the last signs",
        secret=True,
    ),
    "unsigned": FieldSpec(
        "IMGCDN_UNSIGNED",
        one_of("allow", "public-templates"),
        "which unsigned URLs answer: allow (any) or public-templates (only public templates, "
        "within their allow lists); default allow without signing keys, else public-templates",
    ),
    "allow_private_sources": FieldSpec(
        "IMGCDN_ALLOW_PRIVATE_SOURCES",
        flag,
        "1 lets source URLs reach loopback and private addresses: for tests only, never in "
        "production (it turns off the SSRF protection)",
    ),
    "source_hosts": FieldSpec(
        "IMGCDN_SOURCE_HOSTS",
        origin_list,
        "comma-separated origins that source URLs and their redirects may reach, scheme, host "
        "and port all matched: `https://cdn.example.com`, `http://img.example.org:8000`, "
        "`*.example.com` (any subdomain); no scheme means https, no port the scheme's; "
        "empty: any public origin",
    ),
    "source_timeout_s": FieldSpec(
        "IMGCDN_SOURCE_TIMEOUT_S",
        float_in(0.5, 120),
        "one deadline for fetching a source URL (connect, redirects, body): past it, 504",
    ),
    "max_source_bytes": FieldSpec(
        "IMGCDN_MAX_SOURCE_BYTES", int_in(1024, 2**40), "largest original accepted, in bytes"
    ),
    "max_source_pixels": FieldSpec(
        "IMGCDN_MAX_SOURCE_PIXELS",
        int_in(1, 2**40),
        "largest original width x height x frames, checked from the header before decoding",
    ),
    "max_output_side": FieldSpec(
        "IMGCDN_MAX_OUTPUT_SIDE", int_in(16, 65500), "largest w, h (after dpr) of a variant"
    ),
    "max_output_pixels": FieldSpec(
        "IMGCDN_MAX_OUTPUT_PIXELS", int_in(256, 2**40), "largest width x height of a variant"
    ),
    "max_frames": FieldSpec(
        "IMGCDN_MAX_FRAMES", int_in(1, 10_000), "most frames of an animated original"
    ),
    "render_timeout_s": FieldSpec(
        "IMGCDN_RENDER_TIMEOUT_S", float_in(0.1, 600), "a render is cancelled past this (504)"
    ),
    "max_queue": FieldSpec(
        "IMGCDN_MAX_QUEUE",
        int_in(0, 100_000),
        "renders waiting for a thread before new ones get 429",
    ),
    "render_threads": FieldSpec(
        "IMGCDN_RENDER_THREADS",
        int_in(1, 256),
        "renders run at once per process (default 2 x cores, divided among `serve --workers`; "
        "libvips runs 1 thread each)",
    ),
    "memory_cache_bytes": FieldSpec(
        "IMGCDN_MEMORY_CACHE_BYTES",
        int_in(0, 2**40),
        "bytes of encoded variants kept in each process (0 turns the cache off)",
    ),
    "meta_ttl_s": FieldSpec(
        "IMGCDN_META_TTL_S",
        float_in(0, 3600),
        "seconds asset metadata and templates are cached per process (other workers see a "
        "change after it)",
    ),
    "shrink_on_load": FieldSpec(
        "IMGCDN_SHRINK_ON_LOAD",
        one_of("fast", "quality"),
        "fast: JPEG/WebP shrink on load by the largest factor that keeps >= the target "
        "(as sharp and thumbor); quality: keep >= 2x the target for the final Lanczos3",
    ),
    "jpeg_preset": FieldSpec(
        "IMGCDN_JPEG_PRESET",
        one_of("fast", "balanced", "small"),
        "fast: libjpeg defaults; balanced: optimised Huffman tables (~2 % smaller, ~5 % more "
        "CPU); small: mozjpeg trellis quantisation (~15 % smaller, ~1.6x the CPU)",
    ),
    "avif_effort": FieldSpec(
        "IMGCDN_AVIF_EFFORT",
        int_in(0, 9),
        "AV1 encoder effort (0 fastest .. 9 smallest): 0 renders a 12 MP photo to 800 px "
        "in ~0.11 s of CPU, 1 in ~0.28 s (8 % smaller); libvips' own default 4 takes ~1.5 s",
    ),
    "log_level": FieldSpec(
        "IMGCDN_LOG_LEVEL", one_of("debug", "info", "warning", "error"), "log level"
    ),
    "result_ttl_s": FieldSpec(
        "IMGCDN_RESULT_TTL_S",
        int_in(60, 604_800),
        "seconds a processing result and its /r/ URL live; a repeated identical request "
        "renews it; swept after",
    ),
    "public_url": FieldSpec(
        "IMGCDN_PUBLIC_URL",
        base_url,
        "absolute base URL of the links answers give (results /r/..., assets, delivery "
        "URLs), e.g. https://img.example.com; empty: the request's own",
    ),
    "key_rate_per_s": FieldSpec(
        "IMGCDN_KEY_RATE_PER_S",
        float_in(0.001, 100_000),
        "requests per second a new API key may make on average, when its creator gives none",
    ),
    "key_burst": FieldSpec(
        "IMGCDN_KEY_BURST",
        int_in(1, 1_000_000),
        "requests a new API key may make at once above its rate, when its creator gives none",
    ),
    "key_daily_quota": FieldSpec(
        "IMGCDN_KEY_DAILY_QUOTA",
        int_in(0, 10**12),
        "requests per UTC day a new API key may make, when its creator gives none (0: no quota)",
    ),
    "idempotency_max_bytes": FieldSpec(
        "IMGCDN_IDEMPOTENCY_MAX_BYTES",
        int_in(0, 64 * MIB),
        "largest answer body kept for an Idempotency-Key replay; a larger answer is not "
        "replayed: the same request runs again (docs/api-keys.md)",
    ),
    "state_timeout_s": FieldSpec(
        "IMGCDN_STATE_TIMEOUT_S",
        float_in(0.05, 60),
        "longest wait for the shared state (rate limits, quotas, idempotency) before a 503",
    ),
    "redis_url": FieldSpec(
        "IMGCDN_REDIS_URL",
        redis_location,
        "Redis for replicas: rate limits, quotas, idempotency records, jobs and their queue "
        "move there from the data dir (docs/jobs.md); empty: embedded, one machine",
        secret=True,  # a URL may carry a password
    ),
    "webhook_secret": FieldSpec(
        "IMGCDN_WEBHOOK_SECRET",
        webhook_secret,
        "the key webhooks are signed with (HMAC-SHA256, >= 32 chars; docs/webhooks.md); "
        "empty: generated at first start into <data dir>/webhook-secret (with "
        "IMGCDN_REDIS_URL, agreed through Redis so every replica signs alike)",
        secret=True,
    ),
    "batch_max_items": FieldSpec(
        "IMGCDN_BATCH_MAX_ITEMS",
        int_in(1, 100_000),
        "most items in one batch (POST /v1/image/batch/submit); more is 400 too_many_items",
    ),
    "job_concurrency": FieldSpec(
        "IMGCDN_JOB_CONCURRENCY",
        int_in(0, 1024),
        "job items one server process runs at once (0: as many as its render threads; "
        "lower keeps render threads free for delivery while batches run)",
    ),
    "job_keep_s": FieldSpec(
        "IMGCDN_JOB_KEEP_S",
        float_in(60, 366 * 86_400),
        "how long a finished job stays answerable (status, results) before it is swept",
    ),
    "bg_model": FieldSpec(
        "IMGCDN_BG_MODEL",
        onnx_file,
        "an ONNX matting model with rembg's conventions (u2net, isnet, ...) that "
        "background_remove and bg_remove=1 use for every image instead of the built-in "
        "methods (docs/vision.md#background-removal-and-moderation); empty: the built-in ones",
    ),
}

assert set(FIELDS) == {f.name for f in fields(Settings)}, "every setting needs a FieldSpec"


def _read_config(path: Path) -> dict[str, str]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise SettingsError(f"--config {path}: cannot read ({exc.strerror})") from None
    out: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        if not sep or not key.strip():
            raise SettingsError(f"--config {path}:{number}: expected KEY=VALUE")
        out[key.strip()] = value.strip().strip("\"'")
    return out


def settings_table() -> str:
    """The Markdown table of every setting, for `imgcdn settings` and docs/operations.md."""
    rows = ["| variable | default | meaning |", "|---|---|---|"]
    defaults = Settings()
    for name, spec in FIELDS.items():
        rows.append(
            f"| `{spec.env}` | {_shown_default(name, getattr(defaults, name))} | {spec.help} |"
        )
    return "\n".join(rows)


def _shown_default(name: str, default: object) -> str:
    """A default as the variable would be written (`1`, not `True`), in code style; one
    computed at start, or none at all, in words: neither is a value to copy."""
    if name == "render_threads":
        return "2 x cores"
    if name == "unsigned":
        return "allow / public-templates"
    if isinstance(default, bool):  # before int: a bool is an int
        value = "1" if default else "0"
    elif isinstance(default, float):  # 5, not 5.0; never 1e+06
        value = str(int(default)) if default.is_integer() else repr(default)
    elif isinstance(default, tuple):
        value = ",".join(map(str, default))
    else:
        value = str(default)
    return f"`{value}`" if value else "(empty)"
