"""Processing results (SPEC §6): the store (save, lookup, read, renew), the /r/ route and
its signed, expiring URLs, and the sweep, over the real app on a local data dir.

Results are made with server.results on the app's own runtime (through the TestClient's
portal, on the app's event loop); expiry is tested with server.results.clock, the seam
the store reads time from, never by waiting.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx2 as httpx
import pytest
import pyvips
from conftest import decode, error_body, wait_until
from starlette.testclient import TestClient

from server import metrics, results, results_sweep
from server.errors import StorageUnavailable
from server.runtime import Runtime
from server.settings import Settings, SettingsError

RID = "Zm9vYmFyYmF6cXV4LTAxMjM0NTY3"  # 28 url-safe characters, as a hash would be


def jpeg(width: int = 40, height: int = 30) -> bytes:
    body: bytes = pyvips.Image.black(width, height, bands=3).add(90).cast("uchar").jpegsave_buffer()
    return body


def runtime(client: TestClient) -> Runtime:
    rt: Runtime = client.app.state.runtime  # type: ignore[attr-defined]
    return rt


def call(client: TestClient, fn: Callable[..., Any], *args: Any) -> Any:
    """Run a results coroutine on the app's own event loop."""
    assert client.portal is not None
    return client.portal.call(fn, runtime(client), *args)


def save(client: TestClient, result_id: str = RID, body: bytes | None = None) -> results.Result:
    data = body if body is not None else jpeg()
    saved: results.Result = call(client, results.save, result_id, "jpeg", data, 40, 30)
    return saved


def path_of(url: str) -> str:
    parsed = httpx.URL(url)
    return parsed.raw_path.decode()


@contextlib.contextmanager
def clock_at(monkeypatch: pytest.MonkeyPatch, seconds: float) -> Iterator[None]:
    with monkeypatch.context() as m:
        m.setattr(results, "clock", lambda: seconds)
        yield


def storage_down(monkeypatch: pytest.MonkeyPatch, client: TestClient) -> None:
    """Every storage read fails, as an S3 outage makes them (the Storage seam is ours)."""

    async def failing(*args: Any, **kwargs: Any) -> None:
        raise StorageUnavailable("storage get_object failed (test)")

    monkeypatch.setattr(runtime(client).storage, "get_object", failing)


def test_a_saved_result_is_found_read_and_served_at_its_signed_url(client):
    body = jpeg()
    saved = save(client, body=body)
    assert saved.fmt == "jpeg" and saved.mime == "image/jpeg" and saved.bytes == len(body)
    assert saved.expires_at - time.time() == pytest.approx(3600, abs=5)
    assert call(client, results.lookup, RID) == saved
    assert call(client, results.read, saved) == body

    url = results.public_url(runtime(client), "http://testserver/", saved)
    assert re.fullmatch(rf"http://testserver/r/{RID}\.jpg\?exp={saved.expires_at}&sig=[\w-]+", url)
    r = client.get(path_of(url), headers={"X-Correlation-ID": "result-1"})
    assert r.status_code == 200, r.text
    assert r.content == body and decode(r.content).width == 40
    assert r.headers["content-type"] == "image/jpeg"
    assert r.headers["content-length"] == str(len(body))
    assert r.headers["etag"] == f'"{RID}.jpg"'
    max_age = int(r.headers["cache-control"].removeprefix("public, max-age="))
    assert 3590 <= max_age <= 3600
    assert r.headers["x-correlation-id"] == "result-1"
    assert "expires" in r.headers

    head = client.head(path_of(url))
    assert head.status_code == 200 and head.content == b""
    assert head.headers["content-length"] == str(len(body))
    assert head.headers["etag"] == r.headers["etag"]


def test_a_repeated_lookup_is_answered_without_storage(client, monkeypatch):
    saved = save(client)
    storage_down(monkeypatch, client)
    assert call(client, results.lookup, RID) == saved


def test_if_none_match_answers_304_without_reading_storage(client, monkeypatch):
    saved = save(client)
    url = path_of(results.public_url(runtime(client), "http://testserver", saved))
    storage_down(monkeypatch, client)
    r = client.get(url, headers={"If-None-Match": f'W/"x", "{RID}.jpg"'})
    assert r.status_code == 304 and r.content == b""
    assert r.headers["etag"] == f'"{RID}.jpg"'


def tampered(url: str, part: str) -> str:
    found = re.fullmatch(r"/r/([\w-]+)\.(\w+)\?exp=(\d+)&sig=([\w-]+)", url)
    assert found
    rid, ext, exp, sig = found.groups()
    changed = {
        "id": (rid[:-1] + ("A" if rid[-1] != "A" else "B"), ext, exp, sig),
        "ext": (rid, "png", exp, sig),
        "exp": (rid, ext, str(int(exp) + 1), sig),
        "sig": (rid, ext, exp, sig[:-1] + ("A" if sig[-1] != "A" else "B")),
    }[part]
    return "/r/{}.{}?exp={}&sig={}".format(*changed)


@pytest.mark.parametrize("part", ["id", "ext", "exp", "sig"])
def test_a_url_with_any_part_changed_is_a_403_invalid_signature(client, part):
    saved = save(client)
    url = path_of(results.public_url(runtime(client), "http://testserver", saved))
    assert client.get(url).status_code == 200
    r = client.get(tampered(url, part))
    assert error_body(r, 403)["code"] == "invalid_signature"


def test_an_unsigned_url_is_a_403_invalid_signature(client):
    saved = save(client)
    r = client.get(f"/r/{RID}.jpg?exp={saved.expires_at}")
    body = error_body(r, 403)
    assert body["code"] == "invalid_signature" and body["param"] == "sig"


def test_an_expired_url_is_a_403_url_expired_before_any_storage_read(client, monkeypatch):
    saved = save(client)
    url = path_of(results.public_url(runtime(client), "http://testserver", saved))
    storage_down(monkeypatch, client)
    with clock_at(monkeypatch, saved.expires_at):
        r = client.get(url)
    body = error_body(r, 403)
    assert body["code"] == "url_expired" and "expired 0 s ago" in body["message"]


@pytest.mark.parametrize(
    ("url", "param"),
    [
        ("/r/short.jpg?exp=1&sig=x", "id"),
        (f"/r/{RID}.exe?exp=1&sig=x", "ext"),
        (f"/r/{RID}?exp=1&sig=x", "id"),
        (f"/r/{RID}.jpg?exp=soon&sig=x", "exp"),
        (f"/r/{RID}.jpg?sig=x", "exp"),
        (f"/r/{RID}.jpg?exp=1&exp=2&sig=x", "exp"),
        (f"/r/{RID}.jpg?exp=1&w=5&sig=x", "w"),
    ],
)
def test_a_malformed_result_url_is_a_400_naming_the_part(client, url, param):
    assert error_body(client.get(url), 400)["param"] == param


def test_a_signed_url_of_a_result_never_stored_is_a_404(client):
    save(client)  # loads the key
    ghost = results.Result("R" * 24, "png", "image/png", 1, 1, 1, int(time.time()) + 60)
    r = client.get(path_of(results.public_url(runtime(client), "http://x", ghost)))
    assert error_body(r, 404)["code"] == "result_not_found"


def test_storage_down_is_a_503_with_retry_after_on_a_result_url(client, monkeypatch):
    saved = save(client)
    url = path_of(results.public_url(runtime(client), "http://testserver", saved))
    storage_down(monkeypatch, client)
    r = client.get(url)
    assert error_body(r, 503)["code"] == "storage_unavailable"
    assert r.headers["retry-after"] == "5"


def test_public_url_uses_imgcdn_public_url_when_set(make_client):
    client = make_client(public_url="https://img.example.com/base")
    saved = save(client)
    url = results.public_url(runtime(client), "http://internal:8080/", saved)
    assert url.startswith(f"https://img.example.com/base/r/{RID}.jpg?exp=")


@pytest.mark.parametrize(
    "value",
    [
        "img.example.com",
        "ftp://img.example.com",
        "https://x.com/?a=1",
        "https://x.com/#f",
        "https://",
    ],
)
def test_a_public_url_that_is_not_an_absolute_http_base_stops_the_start(value):
    with pytest.raises(SettingsError, match="IMGCDN_PUBLIC_URL"):
        Settings.load({"IMGCDN_PUBLIC_URL": value})


@pytest.mark.parametrize("value", ["59", "604801", "hour"])
def test_a_result_ttl_out_of_bounds_stops_the_start(value):
    with pytest.raises(SettingsError, match="IMGCDN_RESULT_TTL_S"):
        Settings.load({"IMGCDN_RESULT_TTL_S": value})


def test_the_ttl_setting_decides_the_expiry(make_client):
    saved = save(make_client(result_ttl_s=60))
    assert saved.expires_at - time.time() == pytest.approx(60, abs=5)


def test_a_renewal_is_stored_only_after_a_tenth_of_the_ttl(client, monkeypatch):
    saved = save(client)
    assert call(client, results.renew, saved) == saved  # nothing to push yet
    later = time.time() + 400  # past 10 % of 3600 s
    with clock_at(monkeypatch, later):
        renewed = call(client, results.renew, saved)
    assert renewed.expires_at == int(later) + 3600
    runtime(client).results.metas.clear()  # another process: only storage knows
    assert call(client, results.lookup, RID) == renewed


def test_a_renewed_result_outlives_the_sweep_that_takes_an_expired_one(client, monkeypatch):
    now = time.time()
    with clock_at(monkeypatch, now - 3000):
        old = save(client, "old-result-0123456789")  # expires in ~600 s
    kept = save(client, "kept-result-0123456789")
    with clock_at(monkeypatch, now + 1000):
        kept = call(client, results.renew, kept)
    swept_before = metrics.RESULTS_SWEPT._value.get()
    # An hour on: both metadata files are a TTL old, only `old` has expired.
    deleted = call(client, results_sweep.sweep, now + 3700)
    assert deleted == 1
    assert metrics.RESULTS_SWEPT._value.get() == swept_before + 1
    runtime(client).results.metas.clear()
    with clock_at(monkeypatch, now + 3700):
        assert call(client, results.lookup, old.id) is None
        assert call(client, results.lookup, kept.id) == kept
    assert call(client, results.read, kept)
    left = list((runtime(client).settings.data_dir / "objects" / "results").rglob("*"))
    assert sorted(p.name for p in left if p.is_file()) == [f"{kept.id}.bin", f"{kept.id}.json"]


def test_the_sweep_deletes_nothing_unexpired(client):
    save(client)
    assert call(client, results_sweep.sweep, time.time() + 60) == 0
    assert call(client, results.lookup, RID) is not None


def test_the_sweep_stops_at_its_limit_per_pass(client):
    for n in range(5):
        save(client, f"result-number-{n:010d}")
    later = time.time() + 4000
    assert call(client, results_sweep.sweep, later, 2) == 2
    assert call(client, results_sweep.sweep, later, 10) == 3
    assert call(client, results_sweep.sweep, later, 10) == 0


def test_a_crash_between_the_bytes_and_the_metadata_leaves_nothing_visible(client, monkeypatch):
    rt = runtime(client)
    real_put = rt.storage.put_object

    async def crash_on_metadata(key: str, data: bytes, exclusive: bool = False) -> bool:
        if key.endswith(".json"):
            raise StorageUnavailable("storage put_object failed (the process died here)")
        return await real_put(key, data, exclusive)

    monkeypatch.setattr(rt.storage, "put_object", crash_on_metadata)
    with pytest.raises(StorageUnavailable):
        save(client)
    monkeypatch.undo()
    assert call(client, results.lookup, RID) is None
    bytes_key, _ = results.object_keys(RID)
    assert call(client, lambda rt: rt.storage.get_object(bytes_key)) is not None
    # Stray bytes are left to the sweep, once surely not a save in progress.
    assert call(client, results_sweep.sweep, time.time() + 60) == 0
    assert call(client, results_sweep.sweep, time.time() + results_sweep.ORPHAN_AGE_S + 1) == 1
    assert call(client, lambda rt: rt.storage.get_object(bytes_key)) is None


def test_a_save_over_an_expired_result_is_served_again(client, monkeypatch):
    with clock_at(monkeypatch, time.time() - 4000):
        save(client)
    assert call(client, results.lookup, RID) is None
    again = save(client)
    r = client.get(path_of(results.public_url(runtime(client), "http://testserver", again)))
    assert r.status_code == 200


def test_the_generated_key_is_shared_by_every_process_on_the_storage(make_client):
    first = make_client()
    saved = save(first)
    url = path_of(results.public_url(runtime(first), "http://testserver", saved))
    second = make_client()  # same data dir: another worker
    assert second.get(url).status_code == 200
    key_file = runtime(first).settings.data_dir / "objects" / results.KEY_OBJECT
    assert key_file.stat().st_mode & 0o777 == 0o600


def test_with_signing_keys_the_last_signs_and_every_one_verifies(make_client):
    old, new = "old-signing-key-0123456789abcdef0123", "new-signing-key-0123456789abcdef0123"
    before = make_client(signing_keys=(old,))
    saved = save(before)
    url = path_of(results.public_url(runtime(before), "http://testserver", saved))
    rotated = make_client(signing_keys=(old, new))
    assert rotated.get(url).status_code == 200
    fresh = path_of(results.public_url(runtime(rotated), "http://testserver", saved))
    assert fresh != url
    assert make_client(signing_keys=(new,)).get(fresh).status_code == 200
    assert make_client(signing_keys=(new,)).get(url).status_code == 403


def test_a_bad_result_id_is_refused_by_the_store(client):
    with pytest.raises(Exception, match="result id"):
        save(client, "../../etc/passwd")


def test_the_results_counter_counts_each_outcome():
    before = {o: metrics.RESULTS.labels(o)._value.get() for o in ("saved", "reused")}
    metrics.result("saved")
    metrics.result("reused")
    metrics.result("reused")
    assert metrics.RESULTS.labels("saved")._value.get() == before["saved"] + 1
    assert metrics.RESULTS.labels("reused")._value.get() == before["reused"] + 2


def test_a_starting_server_sweeps_what_has_expired(make_client, monkeypatch):
    now = time.time()
    with clock_at(monkeypatch, now - 4000):
        save(make_client())
    monkeypatch.setattr(results, "clock", lambda: now + 3700)
    worker = make_client()
    folder = runtime(worker).settings.data_dir / "objects" / "results"
    wait_until(lambda: not any(p.is_file() for p in folder.rglob("*")))
    assert call(worker, results.lookup, RID) is None


def test_a_save_waits_for_the_lock_a_sweep_holds_on_its_result(client):
    async def scenario(rt: Runtime) -> list[str]:
        order: list[str] = []
        name = f"result-{RID}"
        assert await rt.storage.lock(name, 30)

        async def saving() -> None:
            await results.save(rt, RID, "jpeg", jpeg(), 40, 30)
            order.append("saved")

        task = asyncio.create_task(saving())
        for _ in range(3):  # a few turns of the loop: the save tries, fails, polls
            await asyncio.sleep(0)
        assert not task.done()
        order.append("released")
        await rt.storage.unlock(name)
        await task
        return order

    assert call(client, scenario) == ["released", "saved"]
