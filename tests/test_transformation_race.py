"""POST /v1/image/transformation/create under a race: many clients creating one name at once,
over `imgcdn serve --workers 2` on a local data dir and over two servers sharing an S3 bucket
(SeaweedFS). Exactly one is created, every other gets the 409 an existing name gets, and the
stored template is the winner's, at version 1."""

from __future__ import annotations

import asyncio
import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx2 as httpx
from conftest import AUTH
from test_s3 import bucket, s3_server, s3_settings, two_servers  # noqa: F401  # S3 fixtures
from test_server import serving

from server.storage.local import LocalStorage

CLIENTS = 16


def race(bases: list[str], headers: dict[str, str]) -> list[httpx.Response]:
    """CLIENTS creates of "card", each with its own width, released together, each on its
    own connection (spread over `bases`, and over a server's workers)."""
    start = threading.Barrier(CLIENTS)
    fresh = httpx.Limits(max_keepalive_connections=0)

    def one(i: int) -> httpx.Response:
        body = {"name": "card", "transform": {"width": 10 + i}}
        with httpx.Client(base_url=bases[i % len(bases)], limits=fresh, timeout=30) as http:
            start.wait(timeout=30)
            return http.post("/v1/image/transformation/create", json=body, headers=headers)

    with ThreadPoolExecutor(CLIENTS) as pool:
        return list(pool.map(one, range(CLIENTS)))


def assert_one_winner(answers: list[httpx.Response], base: str, headers: dict[str, str]) -> None:
    assert Counter(r.status_code for r in answers) == {200: 1, 409: CLIENTS - 1}, [
        r.text for r in answers if r.status_code not in (200, 409)
    ]
    assert {r.json()["error"]["code"] for r in answers if r.status_code == 409} == {
        "transformation_exists"
    }
    [winner] = [r.json() for r in answers if r.status_code == 200]
    stored = httpx.get(f"{base}/v1/templates/card", headers=headers, timeout=30).json()
    assert (stored["version"], stored["params"]) == (1, {"w": str(winner["transform"]["width"])})


def test_of_many_creates_of_one_name_over_two_workers_exactly_one_wins(tmp_path):
    with serving(tmp_path, "--workers", "2") as served:
        admin = {"Authorization": f"Bearer {served.token}"}
        answers = race([served.base], admin)
        assert_one_winner(answers, served.base, admin)


def test_of_many_creates_of_one_name_over_two_servers_on_one_bucket_exactly_one_wins(
    two_servers,  # noqa: F811  # the imported fixture
):
    one, two = two_servers
    answers = race([one, two], AUTH)
    assert_one_winner(answers, one, AUTH)


def test_a_create_only_document_write_has_one_winner_and_keeps_its_bytes(tmp_path: Path):
    storage = LocalStorage(tmp_path)

    async def many() -> list[bool]:
        writes = (storage.put_doc("t", "a", b"%d" % i, exclusive=True) for i in range(CLIENTS))
        return list(await asyncio.gather(*writes))

    won = asyncio.run(many())
    assert won.count(True) == 1
    assert asyncio.run(storage.get_doc("t", "a")) == b"%d" % won.index(True)
    assert list((tmp_path / "docs" / "t").iterdir()) == [tmp_path / "docs" / "t" / "a.json"]
