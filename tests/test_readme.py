"""The README is a newcomer's first hour: its two commands stay right, and its walk-through
runs, pasted as it is, against a real `imgcdn serve`, printing what the README says."""

from __future__ import annotations

import subprocess
import tomllib
from pathlib import Path

from doc_examples import SERVE, run_examples, section

from server import cli
from server.settings import Settings

ROOT = Path(__file__).parent.parent
README = (ROOT / "README.md").read_text(encoding="utf-8")
FIRST_COMMAND = "bash scripts/setup && .venv/bin/imgcdn serve"


def test_the_readme_walkthrough_runs_as_pasted_and_prints_what_it_shows(tmp_path):
    walkthrough = section(README, "## A walk-through")
    assert walkthrough.count(SERVE) == 2  # the first start, and the restart with a key
    steps = run_examples(walkthrough, tmp_path)

    assert steps >= 20
    log = (tmp_path / "imgcdn.log").read_text()
    assert log.count("Application shutdown complete") == 2  # both stops were clean
    assert (tmp_path / "card.jpg").stat().st_size > 0


def test_the_readme_first_command_installs_a_server_that_serves_where_the_readme_says():
    assert f"```sh\n{FIRST_COMMAND}\n```" in README
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    assert project["scripts"]["imgcdn"] == "server.cli:main"
    assert project["requires-python"] == ">=3.11"
    assert "Python 3.11" in README
    serve = cli._parser().parse_args(["serve"])
    assert f"http://{serve.host}:{serve.port}" in README
    assert f"`./{Settings().data_dir}`" in README
    assert f"{Settings().data_dir}/admin-token" in README


def test_the_readme_test_command_is_what_ci_runs():
    assert "```sh\nbash .ci/run\n```" in README
    run = ROOT / ".ci" / "run"
    subprocess.run(["bash", "-n", str(run)], check=True)  # it parses
    text = run.read_text(encoding="utf-8")
    assert "ruff" in text and "mypy" in text and "pytest" in text


def test_the_readme_stays_a_guide_of_at_most_250_lines():
    assert len(README.splitlines()) <= 250
