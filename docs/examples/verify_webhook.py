"""Verify an imgcdn webhook (docs/webhooks.md). Python 3.8+, standard library only.

    WEBHOOK_SECRET=... python verify_webhook.py "<Imgcdn-Signature header>" < body.json

prints `ok` and exits 0 for a genuine, fresh delivery; prints `refused` and exits 1 else.
In a receiver, call verify() on the raw request body, before parsing it as JSON.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import sys
import time

TOLERANCE_S = 300  # refuse signatures older (or further ahead) than 5 minutes: replays


def verify(secret: str, header: str, body: bytes, now: float | None = None) -> bool:
    """True when `header` (Imgcdn-Signature: t=<unix>,v1=<hex>) signs exactly `body` with
    `secret`, and its `t` is within TOLERANCE_S of now."""
    t_values, signatures = [], []
    for part in header.split(","):
        key, _, value = part.strip().partition("=")
        if key == "t":
            t_values.append(value)
        elif key == "v1":
            signatures.append(value)
    if len(t_values) != 1 or not t_values[0].isdigit():
        return False
    t = int(t_values[0])
    if abs((time.time() if now is None else now) - t) > TOLERANCE_S:
        return False
    expected = hmac.new(secret.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()
    # compare_digest: the time taken does not tell an attacker how much of a guess matched.
    return any(hmac.compare_digest(expected.encode(), s.encode()) for s in signatures)


if __name__ == "__main__":
    secret = os.environ.get("WEBHOOK_SECRET", "")
    if not secret or len(sys.argv) != 2:
        sys.exit('usage: WEBHOOK_SECRET=... verify_webhook.py "<Imgcdn-Signature>" < body')
    ok = verify(secret, sys.argv[1], sys.stdin.buffer.read())
    print("ok" if ok else "refused")
    sys.exit(0 if ok else 1)
