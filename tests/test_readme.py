"""The README is the user's truth: its settings table and commands must match the code."""

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from server.settings import settings_table
from server.signing import sign

README = (Path(__file__).parent.parent / "README.md").read_text(encoding="utf-8")
WORKED_EXAMPLE = (
    "/t/card/products/42.jpg?w=800&fmt=auto&exp=1893456000"
    "&sig=Hr7hEyYXsFLl7AT2u62mVLXuRu7ZHJxIYKSXsVNMbxc"
)


def test_readme_lists_every_setting_exactly_as_the_code_describes_it():
    for row in settings_table().splitlines()[2:]:
        assert row in README, f"README is missing or has a stale row: {row}"


def test_readme_test_command_is_what_ci_runs():
    assert "bash .ci/run" in README
    assert (Path(__file__).parent.parent / ".ci" / "run").exists()


def _code_block(language: str, after: str) -> str:
    start = README.index(f"```{language}\n", README.index(after)) + len(language) + 4
    return README[start : README.index("```", start)]


def test_the_readme_python_signer_prints_the_worked_example(capsys):
    exec(_code_block("python", "Python (standard library only)"), {})  # noqa: S102  # our README
    assert capsys.readouterr().out.strip() == WORKED_EXAMPLE


def test_the_readme_javascript_signer_prints_the_worked_example(tmp_path):
    node = shutil.which("node")
    if node is None:
        if os.environ.get("CI"):
            pytest.fail("node is needed in CI to check the README's JavaScript signer")
        pytest.skip("node is not installed")
    script = tmp_path / "sign.mjs"
    script.write_text(_code_block("js", "JavaScript (Node"), encoding="utf-8")
    out = subprocess.run([node, str(script)], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == WORKED_EXAMPLE


def test_the_worked_example_is_what_the_server_signs():
    path = WORKED_EXAMPLE.split("&sig=")[0]
    assert sign(path, "imgcdn-example-secret-0123456789abcdef") == WORKED_EXAMPLE
    assert WORKED_EXAMPLE in README
