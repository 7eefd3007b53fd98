"""A drop-in's 4xx kept under an Idempotency-Key replays in that seed's envelope and status,
as the first answer was sent (idempotency.py keeps it as app.py answers the path). Seed 004
checks its image before it claims the key: there the second request is answered afresh,
in the same envelope."""

from __future__ import annotations

from typing import Any

import pytest
from conftest import AUTH

NOT_AN_IMAGE = b"this is not an image at all, just some text" * 10

# path, how to send the non-image, the seed's status for it, where the code is in the body
CASES: dict[str, tuple[str, dict[str, Any], int, Any]] = {
    "seed 000": (
        "/api/v1/image-processing/resize",
        {"files": {"image": ("x.jpg", NOT_AN_IMAGE, "image/jpeg")}, "data": {"width": "80"}},
        415,
        lambda body: body["error"],
    ),
    "seed 001": (
        "/api/v1/compress",
        {"files": {"file": ("x.jpg", NOT_AN_IMAGE, "image/jpeg")}, "data": {"maxWidth": "80"}},
        400,  # its HTTP table has no 415
        lambda body: body["error"],
    ),
    "seed 003": (
        "/api/tasks/visual/correction",
        {"files": {"image_file": ("x.jpg", NOT_AN_IMAGE, "image/jpeg")}, "data": {"sync": "1"}},
        415,
        lambda body: body["data"]["code"],
    ),
    "seed 004": (
        "/api/image/editing/image-cropping",
        {
            "files": {"image": ("x.jpg", NOT_AN_IMAGE, "image/jpeg")},
            "data": {"width": "80", "height": "80"},
        },
        415,
        lambda body: body["error_detail"]["code"],
    ),
}


@pytest.mark.parametrize("seed", CASES)
def test_a_kept_client_error_replays_in_the_seeds_envelope(client, seed):
    path, request, status, code_of = CASES[seed]
    headers = {**AUTH, "Idempotency-Key": f"replay-{seed.replace(' ', '-')}"}

    first = client.post(path, headers=headers, **request)
    again = client.post(path, headers=headers, **request)

    assert first.status_code == status, first.text
    assert code_of(first.json()) == "unsupported_format"
    assert "idempotent-replayed" not in first.headers
    if seed == "seed 004":  # refused before the key was claimed: checked again, not replayed
        assert (again.status_code, code_of(again.json())) == (status, "unsupported_format")
        assert "idempotent-replayed" not in again.headers
        return
    assert (again.status_code, again.json()) == (first.status_code, first.json())
    assert again.headers["idempotent-replayed"] == "true"
