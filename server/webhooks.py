"""Webhooks (SPEC §8): the signing secret, the signature, the retry schedule, the check of a
`webhook_url` at submit, and one delivery attempt. When to try again is the job engine's
business: its deliver_webhook task calls `deliver`, records the Attempt in the JobStore,
and kicks the next attempt `next_delay(attempts)` seconds later, until that says None.

A delivery goes through the same SSRF guard as source URLs (remote.py): the URL's literal
address is checked before any session exists, and a host name's addresses are checked by
remote.PublicResolver where the connection is made, so a name that resolves to loopback
at send time is `refused`, never contacted. IMGCDN_ALLOW_PRIVATE_SOURCES (tests only) lets
both source URLs and webhooks reach 127.0.0.1: one switch turns the one guard off.

The secret is IMGCDN_WEBHOOK_SECRET, else generated once into `<data dir>/webhook-secret`.
With Redis, replicas usually have data dirs of their own and would each generate another,
so the value is agreed first through Redis (SET NX, then GET) and then written to the file.
It is never logged.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import logging
import os
import random
import secrets
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import aiohttp
from redis.asyncio import Redis
from redis.exceptions import RedisError

from server import metrics, remote
from server.errors import (
    ImgcdnError,
    InvalidParam,
    InvalidUrl,
    SourceForbidden,
    StateUnavailable,
    WebhookForbidden,
)

if TYPE_CHECKING:
    from server.runtime import Runtime

log = logging.getLogger("imgcdn")

FILE_NAME = "webhook-secret"
REDIS_KEY = "imgcdn:webhook-secret"  # in Redis: the value every replica signs with
MIN_SECRET_LENGTH = 32
DEADLINE_S = 10.0  # one attempt, connect + send + answer: a hanging receiver is cut off
ANSWER_CAP = 64 * 1024  # bytes of the receiver's answer read (and dropped)
USER_AGENT = f"imgcdn/{version('imgcdn')}"
# Delays before attempts 2, 3, ...: doubling from 5 s (the first retry within 10 s even
# with jitter), then every 10 minutes. 600 x7 rather than the design's x6: with -20 %
# jitter on every delay, x6 could end after 0.8 x 4,235 s = 56 min, short of the hour
# SPEC promises; x7 ends no sooner than 0.8 x 4,835 s = 64 min (at most 97 min).
SCHEDULE: tuple[float, ...] = (5, 10, 20, 40, 80, 160, 320, *(600,) * 7)
JITTER = 0.2  # each delay x uniform(0.8, 1.2): receivers that failed together retry apart
# The clock signatures are stamped with; tests replace it (a seam we own).
clock: Callable[[], float] = time.time

Outcome = Literal["delivered", "retry", "refused"]


@dataclass(frozen=True, slots=True)
class Attempt:
    """How one delivery attempt went. `delivered`: a 2xx answer. `retry`: a timeout, a
    connection error, or any other answer (3xx too: redirects are not followed). `refused`:
    the SSRF guard refused the target, which was never contacted; retrying cannot help.
    `error` is public (it may be shown in the job's status): it names the kind of address
    or the answer, never a resolved address or the receiver's body."""

    outcome: Outcome
    status: int | None = None  # the receiver's HTTP status, when it answered
    error: str | None = None


def sign(secret: str, t: int, body: bytes) -> str:
    """The Imgcdn-Signature header of `body` sent at unix time `t`:
    `t=<t>,v1=<hex HMAC-SHA256(secret, "<t>." + body)>`."""
    digest = hmac.new(secret.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={t},v1={digest}"


def next_delay(attempts: int) -> float | None:
    """Seconds to wait before attempt `attempts + 1`, after `attempts` (>= 1) failed ones;
    None: give up (the webhook is `failed`)."""
    if attempts < 1:
        raise ValueError("attempts counts the attempts made so far: at least 1")
    if attempts > len(SCHEDULE):
        return None
    # Not a secret: jitter only spreads retries out in time.
    return SCHEDULE[attempts - 1] * random.uniform(1 - JITTER, 1 + JITTER)  # noqa: S311


async def ensure_secret(rt: Runtime) -> None:
    """At start (SPEC §8: generated at first start, like the admin token). A Redis that is
    down then must not stop the server: the first delivery agrees on it instead."""
    try:
        await secret(rt)
    except (StateUnavailable, ValueError) as exc:
        log.warning("webhook signing secret not ready at start: %s", exc)


def check_url(rt: Runtime, url: str, field: str) -> str:
    """`url` as it will be posted to, if it may be a webhook target; else 400 naming
    `field`: `invalid_param` (not http(s), too long, credentials, a bad host) or
    `webhook_forbidden` (a loopback, private or metadata address). A host name is checked
    again at every delivery, where the connection is made."""
    try:
        return str(remote.check_url(url, _policy(rt, DEADLINE_S), where=field))
    except SourceForbidden as exc:
        raise WebhookForbidden(field, exc.message) from None
    except InvalidUrl as exc:
        raise InvalidParam(field, exc.message) from None


async def deliver(
    rt: Runtime, url: str, body: bytes, delivery: str, *, timeout_s: float = DEADLINE_S
) -> Attempt:
    """POST `body` (the job's status JSON) to `url`, signed, once, within `timeout_s` for
    the whole attempt. `delivery` is the Imgcdn-Delivery header: the same on every attempt
    of one event (the job id), so a receiver can drop the duplicates at-least-once brings."""
    attempt = await _attempt(rt, url, body, delivery, timeout_s)
    metrics.webhook_attempted(attempt.outcome)
    return attempt


async def _attempt(rt: Runtime, url: str, body: bytes, delivery: str, timeout_s: float) -> Attempt:
    policy = _policy(rt, timeout_s)
    try:
        target = remote.check_url(url, policy, where="webhook_url")
    except ImgcdnError as exc:  # allowed at submit, not now (the test flag went off)
        return Attempt("refused", error=exc.message)
    try:
        key = await secret(rt)
    except (StateUnavailable, ValueError) as exc:  # Redis away, or a bad secret file
        log.warning("webhook %s not sent: no signing secret (%s)", delivery, exc)
        return Attempt("retry", error="the webhook signing secret is unavailable")
    headers = {
        "Content-Type": "application/json",
        "Imgcdn-Signature": sign(key, int(clock()), body),
        "Imgcdn-Delivery": delivery,
    }
    resolver = remote.PublicResolver(policy.allow_private)
    status: int | None = None
    try:
        async with (
            asyncio.timeout(timeout_s),
            remote.open_session(resolver, {"User-Agent": USER_AGENT}) as session,
            session.post(target, data=body, headers=headers, allow_redirects=False) as response,
        ):
            status = response.status
            await _drain(response)
    except TimeoutError:
        if status is None:
            return Attempt("retry", error=f"the receiver did not answer within {timeout_s:g} s")
    except aiohttp.ClientConnectorError as exc:
        if resolver.refused is not None:
            return Attempt("refused", error=f"webhook_url host resolves to {resolver.refused}")
        if isinstance(exc.os_error, socket.gaierror):
            return Attempt("retry", error=f"{exc.host} does not resolve")
        return Attempt("retry", error=f"could not connect to {exc.host}:{exc.port}")
    except aiohttp.ClientError:
        if status is None:
            return Attempt("retry", error="the connection to the receiver failed")
    finally:
        await resolver.close()
    # Answered: judged by the status line, even if the body then stalled or broke off.
    assert status is not None  # every path that leaves it None returned above
    if 200 <= status < 300:
        return Attempt("delivered", status)
    if 300 <= status < 400:
        return Attempt("retry", status, f"receiver answered HTTP {status} (not followed)")
    return Attempt("retry", status, f"receiver answered HTTP {status}")


def _policy(rt: Runtime, timeout_s: float) -> remote.FetchPolicy:
    # No allowed_hosts: IMGCDN_SOURCE_HOSTS is where sources may come from, not where
    # callbacks may go; the address guard is the one that applies to both.
    return remote.FetchPolicy(
        max_bytes=ANSWER_CAP, timeout_s=timeout_s, allow_private=rt.settings.allow_private_sources
    )


async def _drain(response: aiohttp.ClientResponse) -> None:
    # The answer means nothing to us; read a bounded part of it and drop it, so that a
    # receiver streaming on holds neither memory nor the attempt.
    read = 0
    async for chunk in response.content.iter_chunked(16 * 1024):
        read += len(chunk)
        if read >= ANSWER_CAP:
            return


async def secret(rt: Runtime) -> str:
    """The key webhooks are signed with: IMGCDN_WEBHOOK_SECRET, else `<data dir>/
    webhook-secret`, created once (0600) by the first process to ask, after agreeing on
    its value through Redis when IMGCDN_REDIS_URL is set. StateUnavailable when Redis
    cannot be asked; ValueError for a file or Redis value too short to be a secret."""
    if rt.settings.webhook_secret:
        return rt.settings.webhook_secret
    path = rt.settings.data_dir / FILE_NAME
    if rt.redis is not None:
        return await _agreed(rt.redis, path)
    existing = _read(path)
    if existing is not None:
        return existing
    if _publish(path, secrets.token_urlsafe(32), replace=False):
        log.warning(
            "generated a webhook signing secret in %s (set IMGCDN_WEBHOOK_SECRET to choose "
            "your own)",
            path,
        )
    found = _read(path)  # ours, or the one a concurrent first start linked in before us
    assert found is not None  # a published file is only ever replaced, never removed
    return found


async def _agreed(client: Redis, path: Path) -> str:
    mine = _read(path)
    try:
        raw = await client.get(REDIS_KEY)
        if raw is None:
            # The first replica to ask (or Redis lost its data): offer our file's value
            # if there is one, so a secret receivers were already given survives.
            await client.set(REDIS_KEY, mine or secrets.token_urlsafe(32), nx=True)
            raw = await client.get(REDIS_KEY)
    except (RedisError, OSError) as exc:
        raise StateUnavailable(f"redis is unreachable: {type(exc).__name__}") from None
    if raw is None:
        raise StateUnavailable("redis lost the webhook secret; the next attempt agrees anew")
    text = raw if isinstance(raw, str) else raw.decode("ascii", "replace")
    agreed = _valid(text.strip(), f"redis key {REDIS_KEY}")
    if agreed != mine:
        _publish(path, agreed, replace=True)
        log.warning("webhook signing secret in %s: the one the replicas share (Redis)", path)
    return agreed


def _read(path: Path) -> str | None:
    try:
        text = path.read_text(encoding="ascii").strip()
    except FileNotFoundError:
        return None
    return _valid(text, str(path))


def _valid(value: str, where: str) -> str:
    if len(value) < MIN_SECRET_LENGTH:
        raise ValueError(
            f"{where}: webhook secret shorter than {MIN_SECRET_LENGTH} characters; delete it "
            "to have a new one made"
        )
    return value


def _publish(path: Path, value: str, *, replace: bool) -> bool:
    """Put `value` in `path` whole: written to a private temporary file (0600) first, then
    linked into place (the first of concurrent writers wins; False for the others) or,
    with `replace`, renamed over it. No reader ever sees a half-written secret, which a
    plain O_EXCL create-then-write would show to a worker reading in between."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="ascii") as f:
            f.write(value + "\n")
            f.flush()
            os.fsync(f.fileno())
        if replace:
            os.replace(temporary, path)
            return True
        try:
            os.link(temporary, path)
        except FileExistsError:
            return False
        return True
    finally:
        with contextlib.suppress(FileNotFoundError):
            temporary.unlink()
