"""The README is the user's truth: its settings table and commands must match the code."""

from pathlib import Path

from server.settings import settings_table

README = (Path(__file__).parent.parent / "README.md").read_text(encoding="utf-8")


def test_readme_lists_every_setting_exactly_as_the_code_describes_it():
    for row in settings_table().splitlines()[2:]:
        assert row in README, f"README is missing or has a stale row: {row}"


def test_readme_test_command_is_what_ci_runs():
    assert "bash .ci/run" in README
    assert (Path(__file__).parent.parent / ".ci" / "run").exists()
