"""The processing API's scenarios (issue #11), run by bench/run.py (`--only processing`).

- cold: `POST /v1/image/process` of the 12 MP JPEG (resize to 800 px, JPEG q80), as a
  multipart upload and as base64 in JSON, at 4 and 16 connections, against the limit of the
  same job (limit.py `jpeg-800`). Every request is a different image: the result store
  keeps one result per input and ops, so a repeated body would be served, not rendered.
  wrk (bench/post.lua) writes a 16-digit counter into a JPEG COM segment right after SOI.
  In the base64 body that segment's payload starts at byte 6, a multiple of 3, so its 12
  bytes are exactly 16 base64 characters: digits, written straight into the text.
- repeated: the same JSON request by asset id, answered from the stored result.
- auth: that repeated request with the admin token, then with an API key (rate limit never
  reached), back to back, twice: the difference is what a key and its rate limit cost.

/metrics proves each claim: renders equal to the 200s of a cold run (no result reused),
and no render at all during a repeated run.
"""

from __future__ import annotations

import base64
import json
import os
import resource
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import load

HERE = Path(__file__).resolve().parent
PHOTO = HERE / "corpus" / "photo-12mp.jpg"
OPS = [
    {"op": "resize", "params": {"width": 800}},
    {"op": "compress", "params": {"quality": 80, "format": "jpeg"}},
]
OPS_JSON = json.dumps(OPS, separators=(",", ":"))
BOUNDARY = "imgcdn-bench-7d1f0c"
COUNTER = 16  # digits post.lua writes


def jpeg_with_com(payload: bytes) -> bytes:
    """The photo with a COM segment (FF FE, length, payload) right after SOI."""
    data = PHOTO.read_bytes()
    assert data[:2] == b"\xff\xd8"
    return data[:2] + b"\xff\xfe" + (2 + len(payload)).to_bytes(2, "big") + payload + data[2:]


def cold_bodies(folder: Path) -> dict[str, tuple[Path, Path, str]]:
    """kind -> (prefix file, suffix file, Content-Type) around post.lua's counter."""
    marker = b"#" * COUNTER
    jpeg = jpeg_with_com(marker)
    at = jpeg.index(marker)
    head = (
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="ops"\r\n\r\n{OPS_JSON}\r\n'
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="image"; '
        'filename="photo.jpg"\r\nContent-Type: image/jpeg\r\n\r\n'
    ).encode()
    multipart = (head + jpeg[:at], jpeg[at + COUNTER :] + f"\r\n--{BOUNDARY}--\r\n".encode())
    # 12 payload bytes at offset 6: base64 characters 8..23, whatever the digits are.
    text = base64.b64encode(jpeg_with_com(b"\0" * 12)).decode()
    head_json = '{"ops":' + OPS_JSON + ',"image":{"base64":"'
    as_json = ((head_json + text[:8]).encode(), (text[8 + COUNTER :] + '"}}').encode())
    out = {}
    for kind, (prefix, suffix), ctype in (
        ("multipart", multipart, f"multipart/form-data; boundary={BOUNDARY}"),
        ("base64", as_json, "application/json"),
    ):
        (folder / f"{kind}.prefix").write_bytes(prefix)
        (folder / f"{kind}.suffix").write_bytes(suffix)
        out[kind] = (folder / f"{kind}.prefix", folder / f"{kind}.suffix", ctype)
    return out


def sample_body(prefix: Path, suffix: Path, counter: str) -> bytes:
    """The body post.lua sends for `counter`: for a check before the runs."""
    return prefix.read_bytes() + counter.encode() + suffix.read_bytes()


def wrk_post(
    base: str,
    path: str,
    prefix: Path,
    suffix: Path | None,
    headers: dict[str, str],
    connections: int,
    seconds: float,
    pid: int,
    run: int,
) -> dict[str, Any]:
    """wrk over post.lua: one body, made distinct per request when `suffix` is given."""
    env = dict(
        os.environ,
        BENCH_PREFIX=str(prefix),
        BENCH_SUFFIX=str(suffix or ""),
        BENCH_RUN=f"{run:06d}",
        BENCH_PATH=path,
        BENCH_HOST=base.removeprefix("http://"),
        BENCH_HEADERS="\n".join(f"{k}: {v}" for k, v in headers.items()),
    )
    threads = min(2, connections)
    cmd = ["wrk", "-t", str(threads), "-c", str(connections), "-d", f"{seconds:g}s"]
    cmd += ["--timeout", "60s", "-s", str(HERE / "post.lua"), base]
    watch = load.Watch(pid)
    watch.start()
    client = _children_cpu()
    done = subprocess.run(  # noqa: S603 - our own command line
        cmd, env=env, capture_output=True, text=True, timeout=seconds + 120, check=False
    )
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if not lines:
        raise RuntimeError(f"wrk gave no result: {done.stdout}{done.stderr}")
    result: dict[str, Any] = json.loads(lines[-1])
    result.update(watch.stop(result["requests"]))
    # wrk shares the cores with the server (the limit has them to itself): its cost, shown.
    result["client_cpu_ms_per_req"] = round(
        1000 * (_children_cpu() - client) / max(result["requests"], 1), 2
    )
    result["rps"] = round(result["requests"] / result["seconds"], 1)
    result["connections"] = connections
    return result


def _children_cpu() -> float:
    used = resource.getrusage(resource.RUSAGE_CHILDREN)
    return used.ru_utime + used.ru_stime


def settled(read: Any, seconds: float = 10.0) -> float:
    """A counter once it stops moving (renders that crossed wrk's deadline finish)."""
    deadline = time.monotonic() + seconds
    last = read()
    while time.monotonic() < deadline:
        time.sleep(0.3)
        now = read()
        if now == last:
            return float(now)
        last = now
    return float(last)


def temp_folder() -> Path:
    return Path(tempfile.mkdtemp(prefix="imgcdn-bench-process-"))
