"""`scripts/apt.sh`'s `apt_need`, which the README's first command (`scripts/setup`) and
`.ci/run` use to install Debian packages: it installs only what is missing, as root or
through sudo, and says the command when it cannot. `apt-get`, `sudo` and `id` are stand-ins
on PATH here (the seam is our script; the real apt-get runs in CI's fresh machine)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

ROOT = Path(__file__).parent.parent


def stand_ins(tmp_path: Path, uid: int, sudo: bool) -> Path:
    """A bin dir whose apt-get logs its arguments and 'installs' by creating ./installed."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    scripts = {
        "apt-get": f'echo "apt-get $*" >> {tmp_path}/calls\n'
        f'[ "$1" = install ] && touch {tmp_path}/installed\nexit 0',
        "id": f"echo {uid}",
    }
    if sudo:
        scripts["sudo"] = f'echo "sudo $1" >> {tmp_path}/calls\nexec "$@"'
    for name, body in scripts.items():
        path = bin_dir / name
        path.write_text(f"#!/bin/bash\n{body}\n")
        path.chmod(0o755)
    return bin_dir


def apt_need(tmp_path: Path, uid: int = 0, sudo: bool = False) -> subprocess.CompletedProcess[str]:
    bin_dir = stand_ins(tmp_path, uid, sudo)
    check = f"[ -e {tmp_path}/installed ]"
    script = f". {ROOT}/scripts/apt.sh && apt_need tool '{check}' pkg-a pkg-b"
    env = {**os.environ, "PATH": f"{bin_dir}:/usr/bin:/bin"}
    return subprocess.run(["bash", "-c", script], env=env, capture_output=True, text=True)


def calls(tmp_path: Path) -> list[str]:
    log = tmp_path / "calls"
    return log.read_text().splitlines() if log.exists() else []


def test_a_package_whose_check_passes_is_not_installed_again(tmp_path):
    (tmp_path / "installed").touch()
    assert apt_need(tmp_path).returncode == 0
    assert calls(tmp_path) == []


def test_as_root_a_missing_package_is_installed_with_apt_get(tmp_path):
    done = apt_need(tmp_path, uid=0)
    assert done.returncode == 0, done.stderr
    assert calls(tmp_path) == ["apt-get update -qq", "apt-get install -y -qq pkg-a pkg-b"]


def test_a_user_with_sudo_installs_through_sudo(tmp_path):
    done = apt_need(tmp_path, uid=1000, sudo=True)
    assert done.returncode == 0, done.stderr
    assert calls(tmp_path) == [
        "sudo apt-get",
        "apt-get update -qq",
        "sudo apt-get",
        "apt-get install -y -qq pkg-a pkg-b",
    ]
    assert "installing pkg-a pkg-b with sudo apt-get" in done.stderr


def test_a_user_without_sudo_is_told_the_command_and_nothing_runs(tmp_path):
    done = apt_need(tmp_path, uid=1000, sudo=False)
    assert done.returncode == 1
    assert "tool is missing: sudo apt-get install pkg-a pkg-b" in done.stderr
    assert calls(tmp_path) == []


def test_an_install_that_leaves_the_check_failing_is_an_error(tmp_path):
    bin_dir = stand_ins(tmp_path, 0, False)
    script = f". {ROOT}/scripts/apt.sh && apt_need tool false pkg-a"
    env = {**os.environ, "PATH": f"{bin_dir}:/usr/bin:/bin"}
    done = subprocess.run(["bash", "-c", script], env=env, capture_output=True, text=True)
    assert done.returncode == 1
    assert "tool is still missing after installing pkg-a" in done.stderr


def test_setup_and_ci_check_for_tesseract_alike_and_setup_goes_on_without_it():
    setup = (ROOT / "scripts" / "setup").read_text(encoding="utf-8")
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    subprocess.run(["bash", "-n", str(ROOT / "scripts" / "setup")], check=True)
    check = "'command -v tesseract && [ -e /usr/share/tesseract-ocr/5/tessdata/osd.traineddata ]'"
    assert check in setup and check in ci
    assert "tesseract-ocr tesseract-ocr-eng tesseract-ocr-osd \\\n  || echo" in setup
    assert "pip install --quiet ." in setup
