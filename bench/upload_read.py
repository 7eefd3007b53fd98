"""What uvicorn itself costs to read a request body, by event loop: a bare ASGI app (read
the body, answer its length) under `uvicorn --loop L --http httptools`, sent N sequential
POSTs of SIZE random bytes over one keep-alive connection; the server process's on-CPU
time (/proc/PID/schedstat, nanoseconds) per request. Alone, uvloop reads 2.6 MB for ~3 CPU
ms where asyncio takes ~0.8; inside the whole server the difference did not show (bench/run.py
--only processing --baseline, docs/benchmark.md), so serve keeps uvicorn's default, uvloop.

    python bench/upload_read.py [--requests 300] [--sizes 2600000,300000,100]
    (one JSON line per loop and size)
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

APP = """
async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            kind = "startup" if message["type"] == "lifespan.startup" else "shutdown"
            await send({"type": f"lifespan.{kind}.complete"})
            if kind == "shutdown":
                return
    chunks, more = [], True
    while more:
        message = await receive()
        chunks.append(message.get("body", b""))
        more = message.get("more_body", False)
    out = str(len(b"".join(chunks))).encode()
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-length", str(len(out)).encode())]})
    await send({"type": "http.response.body", "body": out})
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def on_cpu_s(pid: int) -> float:
    with open(f"/proc/{pid}/schedstat") as f:
        return int(f.read().split()[0]) / 1e9


def measure(folder: Path, loop: str, size: int, requests: int) -> dict[str, object]:
    port = free_port()
    server = subprocess.Popen(  # noqa: S603  # our own interpreter and arguments
        [sys.executable, "-m", "uvicorn", "bare:app", "--port", str(port), "--loop", loop,
         "--http", "httptools", "--log-level", "warning"],
        cwd=folder,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                conn = http.client.HTTPConnection("127.0.0.1", port)
                conn.connect()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)  # polling for the port, with a deadline
        body = os.urandom(size)

        def post() -> None:
            conn.request("POST", "/", body=body)
            answer = conn.getresponse()
            if answer.read() != str(size).encode():
                raise RuntimeError("the bare app did not read the whole body")

        for _ in range(20):  # warm-up
            post()
        started = on_cpu_s(server.pid)
        for _ in range(requests):
            post()
        ms = 1000 * (on_cpu_s(server.pid) - started) / requests
        return {"loop": loop, "bytes": size, "requests": requests, "server_cpu_ms": round(ms, 3)}
    finally:
        server.terminate()
        server.wait()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--requests", type=int, default=300)
    ap.add_argument("--sizes", default="2600000,300000,100")
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        (folder / "bare.py").write_text(APP)
        for size in (int(s) for s in a.sizes.split(",")):
            for loop in ("uvloop", "asyncio", "uvloop", "asyncio"):  # twice, interleaved
                print(json.dumps(measure(folder, loop, size, a.requests)), flush=True)


if __name__ == "__main__":
    main()
