"""A real `redis-server` (Debian's package) as a child of the tests, on a free port of
127.0.0.1, with its data in a folder of its own: append-only file fsynced on every write and
no RDB snapshots, so a SIGKILL and a restart on the same folder lose nothing acknowledged,
and no background save forks mid-test. Tests kill, restart, pause (SIGSTOP) and resume it.

CI fails when redis-server is missing (`.ci/run` installs it); elsewhere the tests skip.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class RedisProcess:
    """One redis-server. `url` stays the same across kill() and start() (same port, folder)."""

    def __init__(self, folder: Path) -> None:
        if not Path(REDIS_SERVER).exists():
            if os.environ.get("CI"):
                pytest.fail("redis-server (Debian package redis-server) is required in CI")
            pytest.skip("redis-server is not installed")
        self.folder = folder
        self.port = _free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        args = [REDIS_SERVER, "--port", str(self.port), "--bind", "127.0.0.1"]
        args += ["--dir", str(self.folder), "--save", "", "--appendonly", "yes"]
        args += ["--appendfsync", "always", "--daemonize", "no", "--protected-mode", "no"]
        args += ["--logfile", str(self.folder / "redis.log")]
        self.process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 20
        while not self.answers():
            if self.process.poll() is not None:
                log = (self.folder / "redis.log").read_text(errors="replace")[-2000:]
                raise RuntimeError(f"redis-server exited: {log}")
            if time.monotonic() > deadline:
                raise RuntimeError("redis-server did not answer PING within 20 s")
            time.sleep(0.02)  # polling for the port, with a deadline

    def answers(self) -> bool:
        """Whether it answers PING now (a raw RESP exchange: no client library involved)."""
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as s:
                s.sendall(b"PING\r\n")
                return s.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def command(self, *args: str) -> bytes:
        """One command's raw reply (for FLUSHALL and checks; tests use redis-py otherwise)."""
        parts = [f"*{len(args)}\r\n".encode()]
        for arg in args:
            data = arg.encode()
            parts.append(b"$%d\r\n%s\r\n" % (len(data), data))
        with socket.create_connection(("127.0.0.1", self.port), timeout=5) as s:
            s.sendall(b"".join(parts))
            return s.recv(65536)

    def kill(self) -> None:
        """SIGKILL, as a crash; start() brings it back on the same port and folder."""
        assert self.process is not None
        self.process.send_signal(signal.SIGCONT)
        self.process.kill()
        self.process.wait(timeout=10)

    def pause(self) -> None:
        """SIGSTOP: connections open and nothing answers, as a hung or partitioned Redis."""
        assert self.process is not None
        self.process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGCONT)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGCONT)
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
