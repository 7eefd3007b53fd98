"""Runs the `sh` examples of a Markdown section with bash, as a reader pastes them, and
checks what each prints against the `#>` lines written under it.

The docs speak of `localhost:8080` and `.venv/bin/imgcdn serve`; the run gets a free port
instead, so each is rewritten in one controlled place here. `...` in a `#>` line stands for
anything (ids, hashes, times). A command without `#>` lines must print nothing.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from conftest import IMAGES, free_port

DOCS_PORT = "localhost:8080"
SERVE = ".venv/bin/imgcdn serve"
STEP_MARK = "@@doc-example-step-{}@@"
VENV = Path(sys.executable).parent.parent


def section(text: str, heading: str) -> str:
    """The text under `heading` (a whole heading line), up to the next heading of its level
    or above; a `#` line inside a code block is no heading."""
    level = len(heading.split(" ", 1)[0])
    lines = text.split("\n")
    start = lines.index(heading) + 1
    fenced = False
    for end in range(start, len(lines)):
        fenced ^= lines[end].startswith("```")
        if not fenced and re.match(rf"#{{1,{level}}} ", lines[end]):
            return "\n".join(lines[start:end])
    return "\n".join(lines[start:])


@dataclass
class Examples:
    """The `sh` blocks as one script, a marker printed after each command whose output the
    docs show, and those outputs, one list per marker."""

    script: list[str] = field(default_factory=list)
    expected: list[list[str]] = field(default_factory=list)
    commands: list[list[str]] = field(default_factory=list)  # what ran before each marker


def parse(markdown: str) -> Examples:
    examples = Examples()
    pending: list[str] = []
    for block in re.findall(r"^```sh\n(.*?)^```", markdown, re.DOTALL | re.MULTILINE):
        previous_was_output = False
        for line in block.splitlines():
            if line.startswith("#>"):
                if not previous_was_output:
                    step = len(examples.expected)
                    examples.script.append(f"printf '\\n%s\\n' '{STEP_MARK.format(step)}'")
                    examples.expected.append([])
                    examples.commands.append(pending)
                    pending = []
                examples.expected[-1].append(line[2:].strip())
                previous_was_output = True
            else:
                examples.script.append(line)
                pending.append(line)
                previous_was_output = False
    return examples


def matches(expected: str, got: str) -> bool:
    pattern = ".*".join(re.escape(part) for part in expected.split("..."))
    return re.fullmatch(pattern, got) is not None


def _printed(stdout: str, steps: int) -> list[list[str]]:
    chunks = re.split(r"^@@doc-example-step-(\d+)@@$", stdout, flags=re.MULTILINE)
    assert [int(n) for n in chunks[1::2]] == list(range(steps)), f"stopped early:\n{stdout}"
    texts = chunks[0::2]
    assert not texts[-1].strip(), f"output after the last shown step:\n{texts[-1]}"
    return [[line.rstrip("\r") for line in t.splitlines() if line.strip()] for t in texts[:-1]]


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def run_examples(markdown: str, workdir: Path) -> int:
    """Run the examples in `markdown` in one bash from `workdir` (made to look like a
    checkout: `.venv` and `tests/images`), and check every `#>` line. Returns the number
    of checked steps. Fails if a server is left running."""
    if shutil.which("curl") is None:
        if os.environ.get("CI"):
            pytest.fail("curl is needed in CI to run the documentation's examples")
        pytest.skip("curl is not installed")
    port = free_port()
    text = markdown.replace(DOCS_PORT, f"127.0.0.1:{port}")
    text = text.replace(SERVE, f"{SERVE} --port {port}")
    examples = parse(text)
    script = "\n".join(examples.script) + "\n"
    assert "8080" not in script, "a port the test did not redirect"
    (workdir / ".venv").symlink_to(VENV)
    (workdir / "tests").mkdir()
    (workdir / "tests" / "images").symlink_to(IMAGES)
    (workdir / "examples.sh").write_text(script, encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if not k.startswith("IMGCDN_")}

    # Output goes to files, not pipes: a server left running must not hold the test open.
    stdout_file, stderr_file = workdir / "stdout.txt", workdir / "stderr.txt"
    with stdout_file.open("w") as out, stderr_file.open("w") as err:
        bash = subprocess.Popen(
            ["bash", "examples.sh"],
            cwd=workdir,
            env=env,
            stdout=out,
            stderr=err,
            start_new_session=True,  # its own process group: the servers it starts are in it
        )
    try:
        bash.wait(timeout=300)
        left_running = _group_alive(bash.pid)
    finally:
        if _group_alive(bash.pid):
            os.killpg(bash.pid, signal.SIGKILL)
        bash.wait(timeout=10)
    stdout, stderr = stdout_file.read_text(), stderr_file.read_text()

    log = workdir / "imgcdn.log"
    tail = log.read_text()[-3000:] if log.exists() else ""
    printed = _printed(stdout, len(examples.expected))
    for step, (want, lines) in enumerate(zip(examples.expected, printed, strict=True)):
        shown = "\n".join(want)
        assert len(lines) == len(want) and all(map(matches, want, lines)), (
            f"step {step}:\n" + "\n".join(examples.commands[step]) + "\nprinted:\n"
            + "\n".join(lines) + f"\nthe docs show:\n{shown}\nstderr:\n{stderr}\n"
            + f"imgcdn.log (end):\n{tail}"
        )  # fmt: skip
    assert not left_running, "the examples left a server running"
    return len(examples.expected)
