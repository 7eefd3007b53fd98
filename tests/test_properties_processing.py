"""One property through the real app: whatever body a program posts to the processing API
(any op, any params, any image reference, JSON or form), the answer is a result or a JSON
4xx/501 naming the problem, never a 5xx. 300 examples, about 5 s: the renders are of a small
image."""

from __future__ import annotations

import base64
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import AUTH, IMAGES, TOKEN
from hypothesis import event, given, settings
from hypothesis import strategies as st
from starlette.testclient import TestClient

from server.app import create_app
from server.ops import OPS, STEP_PARAMS
from server.settings import Settings

TINY = base64.b64encode((IMAGES / "alpha.png").read_bytes()).decode()


@pytest.fixture(scope="module")
def app_client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    """Small output limits, so that no example renders for long."""
    settings = Settings(
        data_dir=Path(tmp_path_factory.mktemp("processing-properties")),
        admin_tokens=(TOKEN,),
        render_threads=2,
        max_output_side=512,
        max_output_pixels=250_000,
    )
    with TestClient(create_app(settings)) as client:
        r = client.put(
            "/v1/assets/p.png", content=(IMAGES / "alpha.png").read_bytes(), headers=AUTH
        )
        assert r.status_code == 201, r.text
        yield client


SCALARS = st.one_of(
    st.integers(-(2**40), 2**40),
    st.integers(0, 600),
    st.floats(allow_nan=False, allow_infinity=False),  # JSON has neither: the client refuses them
    st.floats(0, 1),
    st.booleans(),
    st.none(),
    st.text(max_size=12),
    st.sampled_from(["h", "v", "hv", "jpeg", "jpg", "webp", "png", "gif", "avif", "16:9", "1:0"]),
    st.sampled_from(["top-left", "bottom_right", "center", "ff00ff", "#00000000", "cover"]),
)
JSONISH = st.recursive(
    SCALARS,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=6,
)
PLAUSIBLE = st.one_of(
    st.integers(1, 300),
    st.floats(0.3, 5),
    st.sampled_from(["h", "v", "jpeg", "webp", "png", "16:9", "1:1", "bottom_right", "hi"]),
)
IMAGES_REFS = st.one_of(
    *[st.just({"base64": TINY})] * 4,
    st.just({"base64": TINY}),
    st.just("p.png"),
    st.just({"id": "p.png"}),
    st.just("data:image/png;base64," + TINY),
    st.sampled_from([{"url": "http://10.0.0.1/x"}, {"base64": "!!"}, "../x", {"id": ""}, 42]),
    JSONISH,
)


@st.composite
def step(draw: st.DrawFn) -> Any:
    op = draw(st.sampled_from([*OPS, "nope"]))
    known = list(STEP_PARAMS[op].fields) if op in OPS else ["width"]
    # Mostly the op's own fields with plausible values, so that many examples render.
    names = st.one_of(*[st.sampled_from(known)] * 6, st.text(max_size=8))
    values = st.one_of(*[PLAUSIBLE] * 4, JSONISH)
    params = draw(st.dictionaries(names, values, max_size=3))
    shape = draw(st.integers(0, 9))
    if shape == 0:
        return draw(JSONISH)  # not a step at all
    return {"op": op, "params": params} if shape > 1 else {"op": op}


BODIES = st.fixed_dictionaries(
    {"image": IMAGES_REFS, "ops": st.lists(step(), max_size=5)},
    optional={
        "format": JSONISH,
        "quality": JSONISH,
        "output": st.sampled_from([{"return": "base64"}, {"return": "binary"}, {"return": 1}]),
        "idempotency_key": st.text(max_size=8),
    },
)


@settings(max_examples=int(os.environ.get("HTTP_EXAMPLES", 300)))
@given(body=BODIES, single=st.sampled_from([None, *OPS]))
def test_no_processing_body_is_a_5xx(app_client: TestClient, body: Any, single: str | None) -> None:
    if single is None:
        r = app_client.post("/v1/image/process", json=body, headers=AUTH)
    else:  # the first step's params at a single-op endpoint's top level
        first = body["ops"][0] if body["ops"] else {}
        params = first.get("params") if isinstance(first, dict) else None
        flat = {"image": body["image"], **(params if isinstance(params, dict) else {})}
        r = app_client.post(f"/v1/image/{single}", json=flat, headers=AUTH)
    event(f"status {r.status_code}")
    assert r.status_code < 500 or r.status_code in (501, 503), r.text
    if r.status_code >= 400:
        error = r.json()["error"]
        assert error["code"] and error["message"]
        assert r.headers["cache-control"] == "no-store"
