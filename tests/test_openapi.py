"""GET /v1/openapi.json: valid OpenAPI 3.1, one entry per routed /v1/ path, and unable to drift
from what the handlers enforce: every documented field is known to its handler, an unknown one
is refused, the documented examples work, and real answers match the documented schemas."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jsonschema
import pytest
from conftest import AUTH, upload
from conftest import error_body as error
from openapi_spec_validator import validate
from starlette.routing import Route
from starlette.testclient import TestClient

from server.app import create_app
from server.errors import InvalidParam
from server.openapi import Operation, openapi_path
from server.ops import OPS
from server.routes.catalog import OPERATIONS, TINY_PNG
from server.routes.correction import PATH as CORRECTION
from server.schema import Choice, Int, Number
from server.settings import Settings
from server.shapes import DELIVERY_QUERY
from server.spec import PARAM_NAMES, Limits, parse_params

# Values for fields whose schema alone does not give a working one.
SAMPLES: dict[str, object] = {
    "image": TINY_PNG,
    "input": TINY_PNG,
    "watermark_image": TINY_PNG,
    "base64": TINY_PNG,
    "url": "http://127.0.0.1:9/nothing.png",
    "background": "ffffff",
    "color": "000000",
    "aspect": "1:1",
    "id": "photo.jpg",
    "template": "_",
    "ops": [],
    "text": "hello",
}
# The routed operations that take a JSON body (the catalog also holds the keys branch's).
ROUTED = {r.path for r in create_app(Settings(data_dir=Path("unused"))).routes}
BODY_OPS = [op for op in OPERATIONS if op.body is not None and op.path in ROUTED]


@pytest.fixture
def doc(client: TestClient) -> dict[str, Any]:
    r = client.get("/v1/openapi.json")  # no key: the document is public
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "application/json"
    return dict(r.json())


@pytest.fixture
def photo(client: TestClient) -> TestClient:
    upload(client, "photo.jpg", "photo.jpg")
    return client


def url_of(client: TestClient, op: Operation) -> str:
    path = openapi_path(op.path)
    if path == "/v1/keys/{id}":  # PATCH: a key that exists (an unknown one is a 404 first)
        made = client.post("/v1/keys", json={"name": "openapi"}, headers=AUTH)
        return path.replace("{id}", made.json()["id"])
    return path.replace("{name}", "card").replace("{id}", "x.png")


def resolve(doc: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        schema = doc["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]]
    return schema


def sample(doc: dict[str, Any], name: str, schema: dict[str, Any]) -> object:
    """A value the schema allows (its smallest), or SAMPLES' for the field."""
    if name in SAMPLES:
        return SAMPLES[name]
    schema = resolve(doc, schema)
    if "enum" in schema:
        return schema["enum"][0]
    if "oneOf" in schema:
        return sample(doc, name, schema["oneOf"][0])
    kind = schema.get("type")
    kind = kind[0] if isinstance(kind, list) else kind
    if kind in ("integer", "number"):
        return schema.get("minimum", 1)
    if kind == "boolean":
        return True
    if kind == "array":
        return [sample(doc, name, schema["items"])] * schema.get("minItems", 0)
    if kind == "object":
        props = schema.get("properties", {})
        return {k: sample(doc, k, props[k]) for k in schema.get("required", [])}
    return "x"


def body_schema(doc: dict[str, Any], op: Operation) -> dict[str, Any]:
    entry = doc["paths"][openapi_path(op.path)][op.method.lower()]
    return resolve(doc, entry["requestBody"]["content"]["application/json"]["schema"])


def base_body(doc: dict[str, Any], op: Operation) -> dict[str, Any]:
    if op.example is not None:
        return dict(op.example)
    schema = body_schema(doc, op)
    body = {k: sample(doc, k, schema["properties"][k]) for k in schema.get("required", [])}
    return {"image": TINY_PNG, **body} if "image" in schema["properties"] else body


def error_of(r: Any) -> dict[str, Any]:
    """An error answer's {code, message, param}: imgcdn's shape, or seed 003's envelope."""
    body = r.json()
    return dict(body["error"] if "error" in body else body["data"])


def matches(doc: dict[str, Any], schema: dict[str, Any], value: object) -> None:
    """Validate `value` against a schema of the document, its $refs resolved in it."""
    jsonschema.Draft202012Validator({**schema, "components": doc["components"]}).validate(value)


def answer_schema(doc: dict[str, Any], method: str, path: str, status: int) -> dict[str, Any]:
    responses = doc["paths"][path][method]["responses"]
    return dict(responses[str(status)]["content"]["application/json"]["schema"])


def test_the_document_is_valid_openapi_3_1(doc):
    validate(doc)
    assert doc["openapi"] == "3.1.0"


def test_every_v1_route_of_the_app_is_in_the_document_and_nothing_else(client, doc):
    roots = ("/v1/", CORRECTION)  # seed 003's drop-in paths are documented too
    routed = {
        (method.lower(), openapi_path(r.path))
        for r in client.app.routes
        if isinstance(r, Route) and r.path.startswith(roots)
        for method in (r.methods or set()) - {"HEAD"}
    }
    documented = {
        (method, path)
        for path, entry in doc["paths"].items()
        if path.startswith(roots)
        for method in entry
    }
    assert documented == routed
    # The catalog describes nothing that is not routed.
    assert {op.path for op in OPERATIONS} - {r.path for r in client.app.routes} == set()


def test_the_ops_enum_and_the_op_endpoints_are_ops_OPS(doc):
    steps = [resolve(doc, s) for s in doc["components"]["schemas"]["Step"]["oneOf"]]
    assert [s["properties"]["op"]["enum"] for s in steps] == [[name] for name in OPS]
    for name in OPS:
        assert "post" in doc["paths"][f"/v1/image/{name}"]


def step_params(doc: dict[str, Any], name: str) -> dict[str, Any]:
    return resolve(doc, {"$ref": f"#/components/schemas/{name}_params"})


@pytest.mark.parametrize("name", list(OPS))
def test_every_documented_param_of_a_process_step_is_known_and_no_other(photo, doc, name):
    schema = step_params(doc, name)
    required = {k: sample(doc, k, schema["properties"][k]) for k in schema.get("required", [])}
    for param, field in [*schema["properties"].items(), ("undocumented", {"type": "integer"})]:
        step = {"op": name, "params": {**required, param: sample(doc, param, field)}}
        r = photo.post("/v1/image/process", json={"image": TINY_PNG, "ops": [step]}, headers=AUTH)
        refused = r.status_code == 400 and "unknown field" in r.json()["error"]["message"]
        assert refused == (param == "undocumented"), (param, r.text)
        if refused:
            assert r.json()["error"]["param"] == "ops[0].params.undocumented"


def test_every_way_to_send_a_key_is_a_security_scheme(doc):
    schemes = doc["components"]["securitySchemes"]
    assert schemes["bearer"]["scheme"] == "bearer"
    sent = {(s.get("in"), s.get("name")) for s in schemes.values()}
    assert {("header", "X-API-KEY"), ("query", "api_key"), ("query", "appkey")} <= sent
    resize = doc["paths"]["/v1/image/resize"]["post"]
    assert {name for entry in resize["security"] for name in entry} == set(schemes)
    assert {"401", "403", "429", "501"} <= set(resize["responses"])
    form = resize["requestBody"]["content"]["multipart/form-data"]["schema"]["properties"]
    assert {"image", "file", "width", "api_key", "appkey"} <= set(form)


@pytest.mark.parametrize("op", BODY_OPS, ids=lambda op: f"{op.method} {op.path}")
def test_every_documented_field_is_known_to_its_handler(photo, doc, op):
    schema = body_schema(doc, op)
    base = base_body(doc, op)
    for name, field in schema["properties"].items():
        body = {**base, name: sample(doc, name, field)}
        r = photo.request(op.method, url_of(photo, op), json=body, headers=AUTH)
        if r.status_code >= 400:
            err = error_of(r)
            refused = err.get("param") == name and "unknown field" in err["message"]
            assert not refused, (name, err)


@pytest.mark.parametrize("op", BODY_OPS, ids=lambda op: f"{op.method} {op.path}")
def test_an_undocumented_field_is_refused_naming_it(photo, doc, op):
    body = {**base_body(doc, op), "undocumented": 1}
    r = photo.request(op.method, url_of(photo, op), json=body, headers=AUTH)
    assert 400 <= r.status_code < 500, r.text
    assert error_of(r)["param"] == "undocumented"


@pytest.mark.parametrize(
    "op",
    [op for op in BODY_OPS if op.example is not None],
    ids=lambda op: f"{op.method} {op.path}",
)
def test_the_documented_example_works_and_its_answer_matches_the_document(photo, doc, op):
    r = photo.request(op.method, url_of(photo, op), json=dict(op.example or {}), headers=AUTH)
    assert r.status_code in (200, 201, 202), r.text  # 202: a batch, queued
    path, method = openapi_path(op.path), op.method.lower()
    matches(doc, answer_schema(doc, method, path, r.status_code), r.json())


@pytest.mark.parametrize("mode", ["url", "base64"])
def test_processing_answers_match_the_document(photo, doc, mode):
    r = photo.post(
        "/v1/image/resize",
        json={"image": {"id": "photo.jpg"}, "width": 40, "output": {"return": mode}},
        headers=AUTH,
    )
    assert r.status_code == 200, r.text
    matches(doc, answer_schema(doc, "post", "/v1/image/resize", 200), r.json())


def test_a_multipart_request_takes_the_image_and_the_documented_fields_as_form_text(photo, doc):
    form = doc["paths"]["/v1/image/process"]["post"]["requestBody"]["content"]
    assert "multipart/form-data" in form
    r = photo.post(
        "/v1/image/process",
        files={
            "image": ("a.jpg", photo.get("/v1/assets/photo.jpg/original", headers=AUTH).content)
        },
        data={"ops": '[{"op": "resize", "params": {"width": 30}}]', "format": "png"},
        headers=AUTH,
    )
    assert r.status_code == 200, r.text
    matches(doc, answer_schema(doc, "post", "/v1/image/process", 200), r.json())
    assert r.json()["width"] == 30


def test_admin_answers_match_the_document(photo, doc):
    answers = [
        ("get", "/v1/assets/{id}", photo.get("/v1/assets/photo.jpg", headers=AUTH)),
        ("get", "/v1/assets", photo.get("/v1/assets", headers=AUTH)),
        ("put", "/v1/templates/{name}", photo.put("/v1/templates/t", json={}, headers=AUTH)),
        ("get", "/v1/templates", photo.get("/v1/templates", headers=AUTH)),
        ("get", "/v1/templates/{name}", photo.get("/v1/templates/t", headers=AUTH)),
    ]
    for method, path, r in answers:
        assert r.status_code in (200, 201), (path, r.text)
        matches(doc, answer_schema(doc, method, path, r.status_code), r.json())


def test_an_error_answer_matches_the_documented_envelope(photo, doc):
    r = photo.post("/v1/image/resize", json={"image": TINY_PNG, "width": 0}, headers=AUTH)
    assert error(r, 400)["param"] == "width"
    matches(doc, answer_schema(doc, "post", "/v1/image/resize", 400), r.json())


def test_seed_003_answers_match_the_document_errors_405_and_404_included(photo, doc):
    jpeg = photo.get("/v1/assets/photo.jpg/original", headers=AUTH).content
    task = CORRECTION + "/{task_id}"

    def post(**fields: object) -> Any:
        form = {k: str(v) for k, v in fields.items()}
        files = {"image_file": ("a.jpg", jpeg, "image/jpeg")}
        return photo.post(CORRECTION, data=form, files=files, headers=AUTH)

    submitted = post(sync=0, type=1)
    task_id = submitted.json()["data"]["task_id"]
    answers = [
        ("post", CORRECTION, submitted),
        ("post", CORRECTION, post(sync=1, type=0, return_type=1)),
        ("post", CORRECTION, post(sync=1, type=1, return_type=2)),
        ("post", CORRECTION, post(sync=1, type=9)),
        ("post", CORRECTION, photo.post(CORRECTION, json={"image_url": "ftp://x"}, headers=AUTH)),
        ("get", task, photo.get(f"{CORRECTION}/{task_id}", headers=AUTH)),
        ("get", task, photo.get(f"{CORRECTION}/nope", headers=AUTH)),
        ("get", task, photo.get(f"{CORRECTION}/{task_id}")),  # no key: a 401
    ]
    for method, path, r in answers:
        matches(doc, answer_schema(doc, method, path, r.status_code), r.json())
    assert [r.status_code for _, _, r in answers] == [200, 200, 200, 400, 400, 200, 404, 401]
    # What the router answers itself (no handler ran) is in the same envelope.
    error = doc["paths"][CORRECTION]["post"]["responses"]["400"]["content"]
    for r, status in [
        (photo.put(CORRECTION, headers=AUTH), 405),
        (photo.delete(f"{CORRECTION}/{task_id}", headers=AUTH), 405),
        (photo.get(f"{CORRECTION}/{task_id}/more", headers=AUTH), 404),
    ]:
        assert r.status_code == status and r.json()["status"] == status, r.text
        matches(doc, error["application/json"]["schema"], r.json())
    assert photo.put(CORRECTION, headers=AUTH).headers["allow"] == "POST"


def test_the_delivery_query_is_the_one_spec_parses_within_the_documented_bounds():
    assert set(DELIVERY_QUERY) == PARAM_NAMES
    limits = Limits()
    for name, rule in DELIVERY_QUERY.items():
        if isinstance(rule, Int | Number):
            for inside in (rule.lo, rule.hi):
                parse_params({name: str(inside)}, limits)
            for outside in (rule.lo - 1, rule.hi + 1):
                with pytest.raises(InvalidParam, match=name):
                    parse_params({name: str(outside)}, limits)
        elif isinstance(rule, Choice):
            for value in rule.values:
                parse_params({name: value}, limits)


def test_the_delivery_route_is_documented_with_its_query(doc):
    entry = doc["paths"]["/t/{template}/{id}"]["get"]
    assert {p["name"] for p in entry["parameters"] if p["in"] == "query"} == PARAM_NAMES
    assert entry["security"] == []
