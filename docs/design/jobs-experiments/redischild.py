"""Start redis-server as a child on a free port: how the tests would do it."""

import os
import socket
import subprocess
import time

import redis


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(dir: str, port: int | None = None, aof: bool = False) -> tuple[subprocess.Popen, int]:
    port = port or free_port()
    args = [
        "redis-server",
        "--port",
        str(port),
        "--bind",
        "127.0.0.1",
        "--dir",
        dir,
        "--save",
        "",  # no RDB snapshots: nothing written unless asked
        "--appendonly",
        "yes" if aof else "no",
        "--appendfsync",
        "always",
        "--protected-mode",
        "no",
        "--daemonize",
        "no",
        "--logfile",
        os.path.join(dir, "redis.log"),
    ]
    p = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    r = redis.Redis(port=port)
    while True:
        try:
            if r.ping():
                return p, port
        except redis.ConnectionError:
            if time.monotonic() > deadline or p.poll() is not None:
                raise
            time.sleep(0.01)
