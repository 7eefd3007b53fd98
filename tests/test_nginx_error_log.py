"""An API key in a query string never reaches nginx's logs, error log included: the real nginx
(the repo's nginx.conf and the k8s edge config) in front of an imgcdn that does not answer,
so nginx logs an upstream failure for each request, as it does in an outage.

nginx writes a request's line into every error-log message about that request, and cannot
be told to redact it; so the servers that take requests log only `alert` and worse there, and
what an upstream failure was (refused: 502, timed out: 504) is in the access log, whose URI
is redacted, as `upstream_status`."""

from __future__ import annotations

import json
from pathlib import Path

import httpx2 as httpx
import pytest
from conftest import free_port
from test_nginx import find_nginx, running_nginx
from test_nginx_hostile import edge_config

SECRETS = ("imgcdn_k_secretinquery0001", "imgcdn_k_secretinquery0002")


def logs_of(prefix: Path) -> dict[str, str]:
    """Every file nginx wrote under its prefix that a log line can be in (the k8s config
    logs to stdout and stderr, which the test's runner keeps in stderr.log)."""
    return {
        str(path.relative_to(prefix)): path.read_text(errors="replace")
        for path in [prefix / "stderr.log", *sorted((prefix / "logs").glob("*"))]
        if path.is_file()
    }


@pytest.mark.parametrize("kind", ["repo", "k8s"])
def test_a_key_in_the_query_of_a_failed_request_is_in_no_nginx_log(kind: str, tmp_path: Path):
    dead = f"http://127.0.0.1:{free_port()}"  # nothing listens there: connect() is refused
    prefix = tmp_path / "nginx"
    conf, url, alive = edge_config(dead, kind, prefix)
    first, second = SECRETS
    with (
        running_nginx(find_nginx(), prefix, conf, alive),
        httpx.Client(base_url=url, timeout=30) as http,
    ):
        answers = [
            http.post(f"/v1/image/resize?api_key={first}", json={"width": 1}),
            http.get(f"/v1/image/list?limit=1&appkey={second}"),
            http.get(f"/t/_/a.jpg?w=10&api_key={first}"),  # through the miss gate
            http.get(f"/r/abc.jpg?exp=1&sig=x&APPKEY={second}"),
            # The drop-ins whose seeds put the key in the query (000: api_key, 001: appkey).
            http.post(f"/api/v1/compress?appkey={second}", data={"maxWidth": "1"}),
            http.post(f"/api/v1/image-processing/resize?api_key={first}", data={"width": "1"}),
            http.post(f"/image-processing?api_key={first}", json={"operations": []}),
            http.post(f"/api/tasks/visual/correction?api_key={first}", data={"sync": "1"}),
            http.post(f"/api/image/editing/image-cropping?appkey={second}", data={"width": "1"}),
        ]
    # nginx has stopped: every buffered access-log line is written.
    assert [a.status_code for a in answers] == [503] * 9
    written = logs_of(prefix)
    assert written, "nginx wrote no log at all"
    for name, text in written.items():
        for secret in SECRETS:
            assert secret not in text, f"{name} holds a key:\n{text}"
    lines = [
        json.loads(line)
        for text in written.values()
        for line in text.splitlines()
        if line.startswith("{")
    ]
    failed = [line for line in lines if line["uri"].startswith("/v1/image/resize")]
    assert failed, f"no access-log line for the failed request:\n{written}"
    assert failed[0]["uri"] == "/v1/image/resize?(query not logged: it holds a key)"
    assert failed[0]["status"] == 503 and "502" in failed[0]["upstream_status"]
    for path in ("/api/v1/compress", "/api/v1/image-processing/resize", "/image-processing"):
        [line] = [line for line in lines if line["uri"].startswith(path)]
        assert line["uri"] == f"{path}?(query not logged: it holds a key)"
