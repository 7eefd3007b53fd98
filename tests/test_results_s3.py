"""Processing results on S3 (a real SeaweedFS on 127.0.0.1, as tests/test_s3.py runs it):
the store, two processes on one bucket sharing results and the signing key, the sweep
reading S3's own modification times, and an outage answered 503 with Retry-After."""

from __future__ import annotations

import os
import signal
import time

import pytest
from test_results import RID, call, clock_at, jpeg, path_of, runtime, save
from test_s3 import bucket, s3_server, s3_settings  # noqa: F401  # the S3 fixtures

from server import results, results_sweep
from server.settings import Settings

S3_FIELDS = ("storage", "s3_endpoint")


@pytest.fixture
def on_s3(make_client, s3_settings: Settings):  # noqa: F811  # the imported fixture
    """A client on the bucket. A storage deadline roomier than test_s3's 2 s, which a
    loaded machine's SeaweedFS can miss; the outage test passes its own."""
    fields = {f: getattr(s3_settings, f) for f in S3_FIELDS}
    return lambda **more: make_client(**{**fields, "s3_timeout_s": 10.0, **more})


def test_a_result_is_saved_found_read_renewed_and_served_from_the_bucket(on_s3, monkeypatch):
    client = on_s3()
    body = jpeg()
    saved = save(client, body=body)
    runtime(client).results.metas.clear()  # from the bucket, not the process cache
    assert call(client, results.lookup, RID) == saved
    assert call(client, results.read, saved) == body
    with clock_at(monkeypatch, time.time() + 500):
        renewed = call(client, results.renew, saved)
    assert renewed.expires_at > saved.expires_at
    runtime(client).results.metas.clear()
    assert call(client, results.lookup, RID) == renewed
    r = client.get(path_of(results.public_url(runtime(client), "http://testserver", renewed)))
    assert r.status_code == 200 and r.content == body
    assert r.headers["content-type"] == "image/jpeg"


def test_another_process_on_the_bucket_verifies_and_serves_the_url(on_s3, tmp_path):
    first = on_s3()
    saved = save(first)
    url = path_of(results.public_url(runtime(first), "http://testserver", saved))
    second = on_s3(data_dir=tmp_path / "another-machine")  # no shared disk: the key is in S3
    r = second.get(url)
    assert r.status_code == 200, r.text
    assert r.content == call(first, results.read, saved)


def test_the_sweep_on_s3_deletes_only_the_expired(on_s3, monkeypatch):
    client = on_s3()
    now = time.time()
    with clock_at(monkeypatch, now - 3000):
        old = save(client, "old-result-0123456789")
    kept = save(client, "kept-result-0123456789")
    with clock_at(monkeypatch, now + 1000):
        kept = call(client, results.renew, kept)
    assert call(client, results_sweep.sweep, now + 3700) == 1
    runtime(client).results.metas.clear()
    with clock_at(monkeypatch, now + 3700):
        assert call(client, results.lookup, old.id) is None
        assert call(client, results.lookup, kept.id) == kept
    keys = call(client, lambda rt: rt.storage.list_keys(results.PREFIX))
    assert sorted(keys) == sorted(results.object_keys(kept.id))


def test_an_s3_outage_is_a_503_with_retry_after_within_the_deadline(
    on_s3,
    s3_server,  # noqa: F811  # the imported fixture
):
    client = on_s3(s3_timeout_s=2.0)
    saved = save(client)
    url = path_of(results.public_url(runtime(client), "http://testserver", saved))
    os.kill(s3_server[1], signal.SIGSTOP)  # the S3 server stops answering, sockets stay open
    try:
        started = time.monotonic()
        r = client.get(url)
        took = time.monotonic() - started
    finally:
        os.kill(s3_server[1], signal.SIGCONT)
    assert r.status_code == 503, r.text
    assert r.json()["error"]["code"] == "storage_unavailable"
    assert r.headers["retry-after"].isdigit()
    assert took < 2 * runtime(client).settings.s3_timeout_s + 1
