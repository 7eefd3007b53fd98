"""What the benchmark reads from /proc: a server's processes, their CPU and memory, and how
busy the rest of the machine is (Linux only)."""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable
from pathlib import Path

TICKS = os.sysconf("SC_CLK_TCK")


def _stat_fields(pid: int) -> list[str]:
    # The command name (field 2) may hold spaces and parentheses: split after its ")".
    text = Path(f"/proc/{pid}/stat").read_text()
    return text.rsplit(")", 1)[1].split()


def family(root: int) -> list[int]:
    """`root` and every process descended from it (uvicorn's workers, nginx's)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            parent = int(_stat_fields(int(entry))[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(parent, []).append(int(entry))
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo.extend(children.get(pid, []))
    return found


def status_kb(pid: int, key: str) -> int:
    """A kB field of /proc/PID/status (VmRSS, VmHWM); 0 once the process is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def reset_peaks(pids: list[int]) -> None:
    """Start VmHWM afresh, so a peak covers one run only."""
    for pid in pids:
        with contextlib.suppress(OSError):  # gone, or not ours to reset
            Path(f"/proc/{pid}/clear_refs").write_text("5")


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds a process has used so far."""
    try:
        fields = _stat_fields(pid)
    except (OSError, IndexError):
        return 0.0
    return (int(fields[11]) + int(fields[12])) / TICKS


def machine_busy_seconds() -> float:
    """CPU seconds the whole machine has spent not idle, all cores together."""
    with open("/proc/stat") as f:
        values = [int(v) for v in f.readline().split()[1:9]]
    return (sum(values) - values[3] - values[4]) / TICKS


def wait_quiet(
    max_wait: float, log: Callable[[str], None], limit_pct: float = 15, window: float = 1.0
) -> None:
    """Wait, at most `max_wait` s, until the machine uses under `limit_pct` % of one core:
    a run that starts while something else holds a core measures that, not us."""
    deadline = time.monotonic() + max_wait
    while True:
        before = machine_busy_seconds()
        time.sleep(window)
        pct = 100 * (machine_busy_seconds() - before) / window
        if pct < limit_pct:
            return
        if time.monotonic() > deadline:
            log(f"  (machine still busy: {pct:.0f} % of a core; going ahead)")
            return
