"""Seed 000's endpoints in /v1/openapi.json: the document stays valid OpenAPI 3.1, documents
every field its handler takes (and nothing else), and real answers, images and errors,
match the documented schemas."""

from __future__ import annotations

import base64
from typing import Any

import jsonschema
import pytest
from conftest import AUTH, IMAGES
from openapi_spec_validator import validate
from starlette.testclient import TestClient

from server.routes import imageprocessing_request as seed

P3 = base64.b64encode((IMAGES / "p3.jpg").read_bytes()).decode()
SINGLE = "/api/v1/image-processing/{operation}"


@pytest.fixture
def doc(client: TestClient) -> dict[str, Any]:
    r = client.get("/v1/openapi.json")
    assert r.status_code == 200
    document: dict[str, Any] = r.json()
    validate(document)
    return document


def answer(doc: dict[str, Any], path: str, status: int) -> dict[str, Any]:
    content = doc["paths"][path]["post"]["responses"][str(status)]["content"]
    schema: dict[str, Any] = content["application/json"]["schema"]
    return schema


def test_both_paths_are_documented_with_every_operation(doc):
    assert doc["paths"][SINGLE]["post"]["parameters"][0]["schema"]["enum"] == list(seed.ENDPOINTS)
    assert "/image-processing" in doc["paths"]


def test_every_documented_field_is_one_the_handler_takes(doc):
    body = doc["paths"][SINGLE]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert set(body["properties"]) == set(seed.SINGLE.fields)
    pipeline = doc["paths"]["/image-processing"]["post"]["requestBody"]["content"]
    assert set(pipeline["application/json"]["schema"]["properties"]) == set(seed.PIPELINE.fields)


@pytest.mark.parametrize("operation", ["resize", "metadata"])
def test_real_json_answers_match_the_documented_envelope(client, doc, operation):
    body = (
        {"image": P3, "width": 40, "response": "json"} if operation == "resize" else {"image": P3}
    )
    r = client.post(f"/api/v1/image-processing/{operation}", json=body, headers=AUTH)
    assert r.status_code == 200, r.text
    jsonschema.validate(r.json(), answer(doc, SINGLE, 200))


def test_a_real_pipeline_answer_and_a_real_error_match_the_document(client, doc):
    ops = [{"operation": "resize", "width": 40}]
    body = {"image": P3, "operations": ops, "output": {"response": "json"}}
    r = client.post("/image-processing", json=body, headers=AUTH)
    assert r.status_code == 200, r.text
    jsonschema.validate(r.json(), answer(doc, "/image-processing", 200))
    bad = client.post("/image-processing", json={**body, "output": {"quality": 0}}, headers=AUTH)
    assert bad.status_code == 400
    jsonschema.validate(bad.json(), answer(doc, "/image-processing", 400))
