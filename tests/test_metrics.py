"""GET /metrics (SPEC §7): request counters by route template, bytes in and out, the render
queue gauges, and one sum over every worker of `imgcdn serve --workers N`."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import httpx2 as httpx
import pytest
from conftest import AUTH, IMAGES, upload, wait_until
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY
from prometheus_client.parser import text_string_to_metric_families
from starlette.testclient import TestClient
from test_server import serving

from server import metrics
from server.imaging.vips import RenderPool

ROOT = Path(__file__).parent.parent
DELIVERY = "/t/{template}/{id}"
ASSET = "/v1/assets/{id}"


@dataclass(frozen=True)
class Scrape:
    """One /metrics answer, parsed with prometheus_client's own parser."""

    body: bytes
    samples: dict[tuple[str, frozenset[tuple[str, str]]], float]

    @classmethod
    def parse(cls, body: bytes) -> Scrape:
        samples = {}
        for family in text_string_to_metric_families(body.decode()):
            for sample in family.samples:
                samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
        return cls(body, samples)

    def value(self, name: str, **labels: str) -> float:
        return self.samples.get((name, frozenset(labels.items())), 0.0)

    def grew(self, before: Scrape, name: str, **labels: str) -> float:
        return self.value(name, **labels) - before.value(name, **labels)

    def series(self, name: str) -> list[frozenset[tuple[str, str]]]:
        return [labels for sample, labels in self.samples if sample == name]


def scrape(client: TestClient | httpx.Client) -> Scrape:
    r = client.get("/metrics")
    assert r.status_code == 200, r.text
    return Scrape.parse(r.content)


def test_metrics_answers_without_auth_uncached_in_prometheus_text_with_the_queue_gauges(client):
    r = client.get("/metrics")
    assert r.status_code == 200
    assert r.headers["content-type"] == CONTENT_TYPE_LATEST
    assert r.headers["cache-control"] == "no-store"
    scraped = Scrape.parse(r.content)
    assert scraped.series("imgcdn_render_queue_depth") == [frozenset()]
    assert scraped.value("imgcdn_render_queue_depth") == 0
    assert scraped.series("imgcdn_renders_in_flight") == [frozenset()]
    for level in ("memory", "store", "originals"):  # charted from zero, before any hit
        assert ("imgcdn_cache_hits_total", frozenset({("level", level)})) in scraped.samples


def test_requests_are_counted_by_route_template_and_status(client):
    before = scrape(client)
    upload(client, "photo.jpg", "photo.jpg")
    for _ in range(2):
        assert client.get("/t/_/photo.jpg?w=64").status_code == 200
    after = scrape(client)

    assert after.grew(before, "imgcdn_requests_total", route=ASSET, status="201") == 1
    assert after.grew(before, "imgcdn_requests_total", route=DELIVERY, status="200") == 2
    assert after.grew(before, "imgcdn_request_seconds_count", route=DELIVERY) == 2
    assert after.grew(before, "imgcdn_request_seconds_sum", route=DELIVERY) > 0
    # The scrape before is itself a request, counted by the next one.
    assert after.grew(before, "imgcdn_requests_total", route="/metrics", status="200") == 1


def test_bytes_out_grow_by_the_bodies_sent_and_bytes_in_by_the_bodies_received(client):
    photo = (IMAGES / "photo.jpg").read_bytes()
    before = scrape(client)
    upload(client, "photo.jpg", "photo.jpg")
    uploaded = scrape(client)
    variant = client.get("/t/_/photo.jpg?w=64")
    head = client.head("/t/_/photo.jpg?w=64")  # declares a length, sends no body
    after = scrape(client)

    assert uploaded.grew(before, "imgcdn_bytes_in_total") == len(photo)
    assert after.grew(uploaded, "imgcdn_bytes_in_total") == 0
    assert head.status_code == 200 and int(head.headers["content-length"]) > 0
    assert after.grew(uploaded, "imgcdn_bytes_out_total") == len(variant.content) + len(
        uploaded.body
    )


def test_an_error_status_is_counted_under_its_route(client):
    before = scrape(client)
    assert client.get("/t/_/missing.jpg").status_code == 404
    assert client.get("/v1/assets/missing.jpg", headers=AUTH).status_code == 404
    assert client.get("/v1/assets/missing.jpg").status_code == 401
    assert client.get("/no/such/route").status_code == 404
    after = scrape(client)

    assert after.grew(before, "imgcdn_requests_total", route=DELIVERY, status="404") == 1
    assert after.grew(before, "imgcdn_requests_total", route=ASSET, status="404") == 1
    assert after.grew(before, "imgcdn_requests_total", route=ASSET, status="401") == 1
    assert after.grew(before, "imgcdn_requests_total", route="unmatched", status="404") == 1


def test_route_labels_are_templates_so_no_asset_id_reaches_the_metrics(client):
    upload(client, "customer-4711/secret-photo.jpg", "photo.jpg")
    assert client.get("/t/_/customer-4711/secret-photo.jpg?w=32").status_code == 200
    assert client.get("/v1/assets/customer-4711/secret-photo.jpg/original").status_code == 401
    assert client.get("/t/_/customer-4711/other.jpg").status_code == 404
    scraped = scrape(client)

    assert b"customer-4711" not in scraped.body and b"secret-photo" not in scraped.body
    templates = {metrics.route_label(route.path) for route in client.app.routes}
    routes = {
        value
        for labels in scraped.series("imgcdn_requests_total")
        for name, value in labels
        if name == "route"
    }
    assert "/v1/assets/{id}/original" in routes
    assert routes <= templates | {"unmatched"}


@pytest.mark.parametrize(
    ("record", "name", "labels"),
    [
        (lambda: metrics.cache_hit("store"), "imgcdn_cache_hits_total", {"level": "store"}),
        (metrics.cache_miss, "imgcdn_cache_misses_total", {}),
        (metrics.coalesced, "imgcdn_coalesced_waits_total", {}),
        (metrics.source_read, "imgcdn_source_reads_total", {}),
        (lambda: metrics.storage_error("get"), "imgcdn_storage_errors_total", {"op": "get"}),
        (metrics.store_write_failed, "imgcdn_variant_store_write_failures_total", {}),
        (
            lambda: metrics.render_observed("avif", 0.2),
            "imgcdn_render_seconds_count",
            {"format": "avif"},
        ),
    ],
)
def test_each_recording_call_adds_one_to_its_series_in_the_scrape(
    client, record: Callable[[], None], name: str, labels: dict[str, str]
):
    before = scrape(client)
    record()
    assert scrape(client).grew(before, name, **labels) == 1


def test_the_queue_gauges_count_renders_running_and_waiting():
    def gauges() -> tuple[float | None, float | None]:
        return (
            REGISTRY.get_sample_value("imgcdn_renders_in_flight"),
            REGISTRY.get_sample_value("imgcdn_render_queue_depth"),
        )

    async def scenario() -> list[tuple[float | None, float | None]]:
        loop = asyncio.get_running_loop()
        pool = RenderPool(threads=1, max_queue=4, timeout_s=30)
        started, release = asyncio.Event(), threading.Event()

        def render(_: object) -> None:
            loop.call_soon_threadsafe(started.set)
            release.wait(30)

        renders = [asyncio.ensure_future(pool.run(render)) for _ in range(3)]
        # All three were submitted in the loop turn that started the first.
        await started.wait()
        busy = gauges()
        release.set()
        await asyncio.gather(*renders)
        idle = gauges()
        pool.shutdown()
        return [busy, idle]

    assert asyncio.run(scenario()) == [(1, 2), (0, 0)]


def test_two_workers_answer_every_scrape_with_the_requests_of_both(tmp_path: Path):
    requests = 20
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    with serving(tmp_path, "--workers", "2", TMPDIR=str(tmp)) as served:
        for _ in range(requests):  # a connection each, so either worker may take it
            assert httpx.get(f"{served.base}/healthz", timeout=10).status_code == 200
        expected = requests + served.healthz_answers  # the start-up polls count too

        def healthz_counted() -> float:
            with httpx.Client(base_url=served.base, timeout=10) as fresh:
                return scrape(fresh).value("imgcdn_requests_total", route="/healthz", status="200")

        wait_until(lambda: healthz_counted() >= expected)
        # Whichever worker answers a scrape, it reads every worker's values.
        assert [healthz_counted() for _ in range(6)] == [expected] * 6
        with httpx.Client(base_url=served.base, timeout=10) as fresh:
            scraped = scrape(fresh)
        # Gauges sum the live workers into one series, not one per process.
        assert scraped.series("imgcdn_render_queue_depth") == [frozenset()]
        folders = list(tmp.glob("imgcdn-metrics-*"))
        assert len(folders) == 1 and list(folders[0].glob("*.db")), served.log()
        served.stop()

    assert not folders[0].exists()  # a stop removes the workers' metric files


def test_a_dead_workers_gauges_leave_the_sum_and_its_counters_stay(tmp_path: Path):
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}

    def python(code: str) -> bytes:
        done = subprocess.run(
            [sys.executable, "-c", code], env=env, cwd=ROOT, capture_output=True, check=True
        )
        return done.stdout

    # A worker that dies with renders queued and running, after one cache miss.
    python("from server import metrics; metrics.queue(3, 1); metrics.cache_miss()")
    scraped = Scrape.parse(
        python(
            "import sys; from server import metrics; sys.stdout.buffer.write(metrics.exposition())"
        )
    )

    assert scraped.value("imgcdn_render_queue_depth") == 0
    assert scraped.value("imgcdn_renders_in_flight") == 0
    assert scraped.value("imgcdn_cache_misses_total") == 1
