"""docs/webhooks.md's verifiers, as files and as quoted on the page, run as a reader runs
them (`python`, `node`) against a real signed delivery captured by a real receiver: the
genuine one passes; a tampered body, a stale or future `t`, or another secret is refused."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from webhook_receiver import receiving

from server.runtime import Runtime
from server.settings import Settings
from server.webhooks import SCHEDULE, deliver, sign

ROOT = Path(__file__).parent.parent
PAGE = (ROOT / "docs" / "webhooks.md").read_text(encoding="utf-8")
EXAMPLES = ROOT / "docs" / "examples"
SECRET = "docs-webhook-secret-0123456789abcdefgh"
NODE = shutil.which("node")

VERIFIERS = {
    "python": [sys.executable, str(EXAMPLES / "verify_webhook.py")],
    "node": [NODE or "node", str(EXAMPLES / "verify_webhook.mjs")],
}


def quoted(language: str, file: Path) -> str:
    """The code block of `language` on the page that quotes `file` (linked just above it)."""
    after = PAGE.index(f"(examples/{file.name})")
    match = re.compile(rf"^```{language}\n(.*?)^```", re.DOTALL | re.MULTILINE)
    found = match.search(PAGE, after)
    assert found is not None
    return found.group(1)


@pytest.mark.parametrize("name", ["verify_webhook.py", "verify_webhook.mjs"])
def test_the_page_quotes_each_verifier_file_whole(name: str) -> None:
    language = "python" if name.endswith(".py") else "js"
    assert quoted(language, EXAMPLES / name) == (EXAMPLES / name).read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def captured(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, bytes]:
    """The Imgcdn-Signature header and body of one real delivery."""
    settings = Settings(
        data_dir=tmp_path_factory.mktemp("data"),
        admin_tokens=("docs-admin-token-0123456789",),
        render_threads=1,
        allow_private_sources=True,
        webhook_secret=SECRET,
    )
    body = b'{"id":"job_docs","status":"completed","count":2,"done":2,"failed":0}'

    async def send(url: str) -> None:
        async with contextlib.AsyncExitStack() as stack:
            rt = await Runtime.start(settings, stack)
            assert (await deliver(rt, url, body, "job_docs")).outcome == "delivered"

    with receiving() as receiver:
        asyncio.run(send(f"{receiver.base}/hook"))
    ((_, headers, got),) = receiver.seen
    return headers["imgcdn-signature"], got


def run(verifier: str, header: str, body: bytes, secret: str = SECRET) -> str:
    command = VERIFIERS[verifier]
    if verifier == "node" and NODE is None:
        if os.environ.get("CI"):
            pytest.fail("node is required in CI (.ci/run installs it)")
        pytest.skip("node is not installed")
    done = subprocess.run(
        [*command, header],
        input=body,
        capture_output=True,
        env={**os.environ, "WEBHOOK_SECRET": secret},
        timeout=60,
        check=False,
    )
    out = done.stdout.decode().strip()
    assert (done.returncode, out) in ((0, "ok"), (1, "refused")), done.stderr.decode()
    return out


@pytest.mark.parametrize("verifier", VERIFIERS)
def test_a_real_delivery_verifies(verifier: str, captured: tuple[str, bytes]) -> None:
    header, body = captured
    assert run(verifier, header, body) == "ok"


@pytest.mark.parametrize("verifier", VERIFIERS)
def test_a_tampered_body_is_refused(verifier: str, captured: tuple[str, bytes]) -> None:
    header, body = captured
    assert run(verifier, header, body.replace(b'"failed":0', b'"failed":1')) == "refused"
    assert run(verifier, header, body + b" ") == "refused"


@pytest.mark.parametrize("verifier", VERIFIERS)
def test_another_secret_is_refused(verifier: str, captured: tuple[str, bytes]) -> None:
    header, body = captured
    assert run(verifier, header, body, secret=SECRET.upper()) == "refused"


@pytest.mark.parametrize("verifier", VERIFIERS)
@pytest.mark.parametrize(("age", "verdict"), [(290, "ok"), (310, "refused"), (-310, "refused")])
def test_a_signature_more_than_5_minutes_off_is_refused(
    verifier: str, captured: tuple[str, bytes], age: int, verdict: str
) -> None:
    """Correctly signed, at another time: the check is on `t` itself, not the signature.
    10 s clear of the 300 s edge: `t` is whole seconds and the verifier reads its clock later."""
    _, body = captured
    assert run(verifier, sign(SECRET, int(time.time()) - age, body), body) == verdict


@pytest.mark.parametrize("verifier", VERIFIERS)
@pytest.mark.parametrize(
    "header",
    ["", "t=,v1=", "v1=00", "t=1700000000", "t=abc,v1=00", "t=1,t=2,v1=00", "garbage"],
)
def test_a_malformed_header_is_refused(
    verifier: str, captured: tuple[str, bytes], header: str
) -> None:
    assert run(verifier, header, captured[1]) == "refused"


@pytest.mark.parametrize("verifier", VERIFIERS)
def test_a_signature_moved_to_another_t_is_refused(
    verifier: str, captured: tuple[str, bytes]
) -> None:
    header, body = captured
    t, v1 = header.split(",")
    moved = f"t={int(t.removeprefix('t=')) + 1},{v1}"
    assert run(verifier, moved, body) == "refused"


def test_the_worked_example_on_the_page_is_what_sign_computes() -> None:
    line = re.search(r"Imgcdn-Signature: (t=1700000000,v1=[0-9a-f]{64})", PAGE)
    assert line is not None
    assert line.group(1) == sign("webhook-test-secret-0123456789abcdef", 1_700_000_000, b"{}")


def test_the_retry_table_on_the_page_is_the_schedule() -> None:
    row = re.search(r"^\| next attempt in \(±20 %\) \|(.*)\|$", PAGE, re.MULTILINE)
    assert row is not None
    cells = [c.strip() for c in row.group(1).split("|")]
    assert cells == [f"{int(d)} s" for d in SCHEDULE[:7]] + ["600 s each"]
    assert SCHEDULE[7:] == (600,) * 7 and "15 attempts" in PAGE
