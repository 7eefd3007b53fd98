"""Webhook delivery against real receivers (uvicorn in a thread on 127.0.0.1): signed
POSTs, retries on 5xx, timeouts and redirects, the SSRF guard at submit and at send time.

The retry loop is driven here as the job engine drives it, minus the wait: the engine
kicks the next attempt `next_delay(attempts)` seconds later; this loop goes on at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import socket
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import replace
from typing import Any

import pytest
from prometheus_client import REGISTRY
from webhook_receiver import Receiver, receiving

from server.errors import ImgcdnError
from server.runtime import Runtime
from server.settings import Settings
from server.webhooks import Attempt, check_url, deliver, next_delay, sign

SECRET = "webhook-test-secret-0123456789abcdef"
BODY = b'{"id":"job_1","status":"completed","count":1,"done":1,"failed":0}'


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with receiving() as r:
        yield r


@pytest.fixture
def hook_settings(settings: Settings) -> Settings:
    return replace(settings, allow_private_sources=True, webhook_secret=SECRET)


@contextlib.asynccontextmanager
async def running(settings: Settings) -> AsyncIterator[Runtime]:
    async with contextlib.AsyncExitStack() as stack:
        yield await Runtime.start(settings, stack)


def attempts_counted(outcome: str) -> float:
    value = REGISTRY.get_sample_value("imgcdn_webhook_attempts_total", {"outcome": outcome})
    return value or 0.0


def assert_signed(headers: dict[str, str], body: bytes, secret: str = SECRET) -> None:
    t = int(headers["imgcdn-signature"].split(",")[0].removeprefix("t="))
    assert abs(time.time() - t) < 60
    assert headers["imgcdn-signature"] == sign(secret, t, body)


def test_the_signature_is_hmac_sha256_over_t_dot_body() -> None:
    # Computed independently: printf '1700000000.{}' | openssl dgst -sha256 -hmac <SECRET>
    assert sign(SECRET, 1_700_000_000, b"{}") == (
        "t=1700000000,v1=c2d50c99766c39d54f9e0a23003adf827bc11d25d4435522491c2ea8363881b6"
    )


def test_a_receiver_failing_twice_gets_the_third_attempt_signed_anew(
    receiver: Receiver, hook_settings: Settings
) -> None:
    receiver.plan = [500, 503]
    delivered_before = attempts_counted("delivered")

    async def main() -> list[Attempt]:
        outcomes = []
        async with running(hook_settings) as rt:
            while True:
                attempt = await deliver(rt, f"{receiver.base}/hook", BODY, "job_1")
                outcomes.append(attempt)
                if attempt.outcome != "retry":
                    return outcomes
                delay = next_delay(len(outcomes))
                assert delay is not None and delay <= 10 * len(outcomes) ** 2

    outcomes = asyncio.run(main())
    assert [(a.outcome, a.status) for a in outcomes] == [
        ("retry", 500),
        ("retry", 503),
        ("delivered", 200),
    ]
    assert outcomes[0].error == "receiver answered HTTP 500"
    assert len(receiver.seen) == 3
    for path, headers, body in receiver.seen:
        assert (path, body) == ("/hook", BODY)
        assert headers["content-type"] == "application/json"
        assert headers["imgcdn-delivery"] == "job_1"
        assert headers["user-agent"].startswith("imgcdn/")
        assert_signed(headers, body)
    assert attempts_counted("delivered") == delivered_before + 1


def test_a_hanging_receiver_is_cut_off_at_the_deadline_and_retried(
    receiver: Receiver, hook_settings: Settings
) -> None:
    async def main() -> tuple[Attempt, float]:
        async with running(hook_settings) as rt:
            started = time.monotonic()
            attempt = await deliver(rt, f"{receiver.base}/hang", BODY, "job_1", timeout_s=1.0)
            return attempt, time.monotonic() - started

    attempt, seconds = asyncio.run(main())
    assert attempt == Attempt("retry", None, "the receiver did not answer within 1 s")
    assert 0.9 < seconds < 2.5
    assert len(receiver.seen) == 1


def test_a_receiver_that_answers_2xx_then_stalls_counts_as_delivered(
    receiver: Receiver, hook_settings: Settings
) -> None:
    async def main() -> Attempt:
        async with running(hook_settings) as rt:
            url = f"{receiver.base}/hang-after-status"
            return await deliver(rt, url, BODY, "job_1", timeout_s=1.0)

    assert asyncio.run(main()) == Attempt("delivered", 202)


def test_a_redirect_is_a_failed_attempt_and_is_not_followed(
    receiver: Receiver, hook_settings: Settings
) -> None:
    async def main() -> Attempt:
        async with running(hook_settings) as rt:
            return await deliver(rt, f"{receiver.base}/redirect", BODY, "job_1")

    attempt = asyncio.run(main())
    assert (attempt.outcome, attempt.status) == ("retry", 302)
    assert attempt.error is not None and "not followed" in attempt.error
    assert [path for path, _, _ in receiver.seen] == ["/redirect"]


def test_a_receiver_that_is_not_listening_is_a_retry(hook_settings: Settings) -> None:
    with socket.socket() as s:  # a port nothing listens on once closed
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]

    async def main() -> Attempt:
        async with running(hook_settings) as rt:
            return await deliver(rt, f"http://127.0.0.1:{port}/hook", BODY, "job_1")

    attempt = asyncio.run(main())
    assert attempt == Attempt("retry", None, f"could not connect to 127.0.0.1:{port}")


def test_a_name_resolving_to_loopback_at_send_time_is_refused_never_contacted(
    settings: Settings,
) -> None:
    """The production guard (no test flag): `localhost` passes the check at submit (a name
    is checked where the connection is made), and is refused at send time."""
    guarded = replace(settings, webhook_secret=SECRET)
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        url = f"http://localhost:{listener.getsockname()[1]}/hook"
        refused_before = attempts_counted("refused")

        async def main() -> tuple[str, Attempt]:
            async with running(guarded) as rt:
                return check_url(rt, url, "webhook_url"), await deliver(rt, url, BODY, "job_1")

        checked, attempt = asyncio.run(main())
        assert checked == url
        assert attempt == Attempt(
            "refused", None, "webhook_url host resolves to a loopback address"
        )
        listener.setblocking(False)
        with pytest.raises(BlockingIOError):  # no connection was ever made
            listener.accept()
    assert attempts_counted("refused") == refused_before + 1


@pytest.mark.parametrize(
    ("url", "code", "message"),
    [
        ("ftp://example.com/hook", "invalid_param", "must be http or https"),
        ("https://user:pw@example.com/hook", "invalid_param", "must not carry credentials"),
        ("https:///hook", "invalid_param", "has no host"),
        ("https://example.com/" + "a" * 2048, "invalid_param", "longer than 2048"),
        ("http://127.0.0.1:8080/hook", "webhook_forbidden", "loopback address"),
        ("http://2130706433/hook", "webhook_forbidden", "loopback address"),
        ("http://10.0.0.5/hook", "webhook_forbidden", "private address"),
        ("http://169.254.169.254/latest/meta-data/", "webhook_forbidden", "metadata"),
        ("http://[::1]/hook", "webhook_forbidden", "loopback address"),
    ],
)
def test_a_webhook_url_the_guard_refuses_is_a_400_naming_the_field(
    settings: Settings, url: str, code: str, message: str
) -> None:
    async def main() -> ImgcdnError:
        async with running(settings) as rt:
            with pytest.raises(ImgcdnError) as caught:
                check_url(rt, url, "webhook_url")
            return caught.value

    error = asyncio.run(main())
    assert (error.status, error.code, error.param) == (400, code, "webhook_url")
    assert message in error.message and error.message.startswith("webhook_url")


def test_the_test_flag_lets_a_webhook_reach_loopback(hook_settings: Settings) -> None:
    async def main() -> str:
        async with running(hook_settings) as rt:
            return check_url(rt, "http://127.0.0.1:9/hook#frag", "webhook_url")

    assert asyncio.run(main()) == "http://127.0.0.1:9/hook"


def test_a_public_https_url_passes_the_check(settings: Settings) -> None:
    async def main() -> str:
        async with running(settings) as rt:
            return check_url(rt, "https://hooks.example.com/imgcdn?x=1", "webhook_url")

    assert asyncio.run(main()) == "https://hooks.example.com/imgcdn?x=1"


def test_the_first_retry_comes_within_10_s_whatever_the_jitter(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for pick in (min, max):
        with monkeypatch.context() as m:
            m.setattr(random, "uniform", lambda a, b, pick=pick: pick(a, b))
            first = next_delay(1)
            assert first is not None and 4 <= first <= 6 <= 10


def test_retries_go_on_for_over_an_hour_even_with_every_jitter_short(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(random, "uniform", lambda a, b: a)
    delays: list[float] = []
    while (delay := next_delay(len(delays) + 1)) is not None:
        delays.append(delay)
    assert len(delays) == 14  # 15 attempts in all
    assert sum(delays) >= 3600
    assert delays == sorted(delays)  # backs off, never speeds up
    assert delays[1:7] == [2 * d for d in delays[:6]]  # doubling first


def test_retries_end_by_two_hours_even_with_every_jitter_long(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(random, "uniform", lambda a, b: b)
    total, attempts = 0.0, 1
    while (delay := next_delay(attempts)) is not None:
        total, attempts = total + delay, attempts + 1
    assert total <= 2 * 3600


def test_the_delays_are_jittered_so_receivers_that_failed_together_retry_apart() -> None:
    delays = {next_delay(3) for _ in range(50)}
    assert len(delays) > 40
    assert all(d is not None and 16 <= d <= 24 for d in delays)


def test_next_delay_wants_at_least_one_attempt_made() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        next_delay(0)


def deliver_once(settings: Settings, url: str) -> Attempt:
    async def main() -> Attempt:
        async with running(settings) as rt:
            return await deliver(rt, url, BODY, "job_1")

    return asyncio.run(main())


def test_a_url_allowed_at_submit_but_refused_at_send_time_is_refused(
    settings: Settings, receiver: Receiver
) -> None:
    """The test flag was on at submit and is off now: the literal address is refused."""
    guarded = replace(settings, webhook_secret=SECRET)
    attempt = deliver_once(guarded, f"{receiver.base}/hook")
    assert attempt == Attempt("refused", None, "webhook_url host is a loopback address")
    assert receiver.seen == []


def test_the_metric_counts_every_outcome(receiver: Receiver, hook_settings: Settings) -> None:
    before = {o: attempts_counted(o) for o in ("delivered", "retry", "refused")}
    receiver.plan = [500]
    deliver_once(hook_settings, f"{receiver.base}/hook")
    deliver_once(hook_settings, f"{receiver.base}/hook")
    deliver_once(replace(hook_settings, allow_private_sources=False), f"{receiver.base}/hook")
    after: dict[str, Any] = {o: attempts_counted(o) - before[o] for o in before}
    assert after == {"delivered": 1, "retry": 1, "refused": 1}
