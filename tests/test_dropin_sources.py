"""A drop-in's `image_url` is a plain URL field: an error about it names `image_url`, as the
seed's client sent it (the processing API's `image` can hold {url}, so it says image.url)."""

from __future__ import annotations

from typing import Any

import pytest
from conftest import AUTH

FORBIDDEN = "http://169.254.169.254/latest/meta-data"  # link-local: the SSRF guard refuses it

# path, the JSON body around the URL, where the error's param is in the answer
CASES: dict[str, tuple[str, dict[str, Any], Any]] = {
    "seed 000": (
        "/image-processing",
        {"operations": [{"operation": "resize", "width": 10}]},
        lambda body: body["param"],
    ),
    "seed 001": ("/api/v1/compress", {"maxWidth": 10}, lambda body: body["param"]),
    "seed 003": ("/api/tasks/visual/correction", {"sync": 1}, lambda body: body["data"]["param"]),
}


@pytest.mark.parametrize("seed", CASES)
def test_a_refused_image_url_is_named_as_the_seed_names_it(client, seed):
    path, body, param_of = CASES[seed]

    r = client.post(path, json={**body, "image_url": FORBIDDEN}, headers=AUTH)

    assert r.status_code in (400, 403), r.text  # seed 001 folds this 403 onto 400
    assert param_of(r.json()) == "image_url"
