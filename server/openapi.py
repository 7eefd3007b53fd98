"""The OpenAPI 3.1 document, generated: the app's routes x the operation table. Pure.

Which paths exist is the app's routes (the router is the source of truth); what each one
takes and answers is its `Operation` (routes/catalog.py), whose bodies are the very schema
objects the handlers validate with. So the document describes what is enforced, never a copy.
A titled `Obj` becomes a component (`#/components/schemas/<title>`), used by reference.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from server.routes import compression, cropping
from server.schema import Array, Field, Obj, Schema

Security = Literal["admin", "key", "public"]
PATH_PARAM = re.compile(r"\{([a-zA-Z_][a-zA-Z0-9_]*)(?::[a-z]+)?\}")
ERROR_REF = {"$ref": "#/components/schemas/Error"}
# SPEC §4's table: the status -> when it is answered.
STATUS_TEXT = {
    400: "Malformed URL, id, parameter or body; `param` names the field",
    401: "No valid key or admin token (`unauthorized`)",
    403: "`key_disabled`, `key_expired`, `scope_denied`; a signature missing, invalid or "
    "expired; a parameter not allowed",
    404: "Unknown asset, template or key",
    409: "The same idempotency key is still being processed (`Retry-After`)",
    413: "Source larger than IMGCDN_MAX_SOURCE_BYTES or IMGCDN_MAX_SOURCE_PIXELS",
    415: "Source format not accepted, or a body of a type the endpoint does not take",
    422: "Source cannot be decoded; `maxbytes`/`target_bytes` unreachable; an idempotency key "
    "reused for a different request; an invalid template",
    429: "`rate_limited`, `quota_exceeded` or the render queue is full (`Retry-After`)",
    501: "`not_available`: a feature whose engine this install does not have",
    503: "Storage or upstream unavailable (`Retry-After`)",
    504: "Render or source fetch exceeded its timeout",
}
# What every caller of a kind can be answered, besides the operation's own errors.
SECURITY_ERRORS: dict[Security, tuple[int, ...]] = {
    "admin": (401,),
    "key": (401, 403, 429),
    "public": (),
}


@dataclass(frozen=True)
class Reply:
    """One answer of an operation: a JSON schema, image bytes, or nothing (204)."""

    description: str
    json: Field | tuple[Field, ...] | None = None  # a tuple: one of these
    image: bool = False


@dataclass(frozen=True)
class Operation:
    """What one (method, route) takes and answers. `path` is the route's path as app.py
    writes it (`/v1/assets/{id:anypath}`); `body` is the Obj its handler checks a JSON body
    with; `form` adds multipart/form-data (image or file bytes + the same fields)."""

    method: str
    path: str
    summary: str
    tag: str
    security: Security
    scope: str | None = None
    body: Obj | None = None
    form: bool = False
    raw_image: bool = False  # the body may be the image bytes themselves
    query: Mapping[str, Field] = field(default_factory=dict)
    params: Mapping[str, str] = field(default_factory=dict)  # path param -> description
    replies: Mapping[int, Reply] = field(default_factory=dict)
    errors: tuple[int, ...] = ()
    example: Mapping[str, Any] | None = None
    # A drop-in API answering errors in its own shape (seed 003's envelope), not Error's.
    error_json: Field | None = None
    files: tuple[str, ...] = ("image", "file")  # the multipart form's file fields


def openapi_path(route_path: str) -> str:
    """`/v1/assets/{id:anypath}` -> `/v1/assets/{id}`: OpenAPI has no convertors."""
    return PATH_PARAM.sub(r"{\1}", route_path)


class Components:
    """Schemas by title: each titled Obj is written once and referenced everywhere.
    `refined` documents a titled Obj as one of several finer ones: a `process` step, which
    the handler checks as {op, params} and then params by the op's own Obj, is one of the
    ops' steps."""

    def __init__(self, refined: Mapping[str, tuple[Obj, ...]]) -> None:
        self.schemas: dict[str, Schema] = {}
        self.refined = refined

    def schema(self, rule: Field) -> Schema:
        if isinstance(rule, Obj):
            title = rule.title
            if title is not None:
                if title not in self.schemas:
                    self.schemas[title] = {}  # reserved first: a recursive Obj ends here
                    if title in self.refined:
                        variants = [self.schema(v) for v in self.refined[title]]
                        self.schemas[title] = rule._described({"oneOf": variants})
                    else:
                        self.schemas[title] = self._object(rule)
                return {"$ref": f"#/components/schemas/{title}"}
            return self._object(rule)
        if isinstance(rule, Array):
            return {**rule.schema(), "items": self.schema(rule.item)}
        return rule.schema()

    def _object(self, rule: Obj) -> Schema:
        # The Obj's own schema, with each field's replaced by one that may be a reference.
        out = rule.schema()
        out["properties"] = {name: self.schema(sub) for name, sub in rule.fields.items()}
        for name in sorted(rule.ignored):  # accepted and dropped: credentials in a body
            out["properties"][name] = {
                "type": "string",
                "writeOnly": True,
                "description": "the API key, as a body or form field (accepted, never stored)",
            }
        return out


def document(
    routes: Iterable[tuple[str, str]],
    operations: Iterable[Operation],
    info: Mapping[str, Any],
    refined: Mapping[str, tuple[Obj, ...]],
) -> dict[str, Any]:
    """The document for `routes` ((METHOD, route path) pairs as routed), each described by
    its Operation. A routed pair with no Operation raises: nothing routed goes undescribed."""
    table = {(op.method.upper(), op.path): op for op in operations}
    shared = Components(refined)
    paths: dict[str, dict[str, Any]] = {}
    for method, path in routes:
        op = table.get((method, path))
        if op is None:
            raise LookupError(f"{method} {path} is routed but has no Operation in the catalog")
        paths.setdefault(openapi_path(path), {})[method.lower()] = _operation(op, shared)
    paths.update(compression.openapi_paths() | cropping.openapi_paths())  # seeds 001, 004
    tags = list(dict.fromkeys(op.tag for op in table.values()))  # the table's order
    return {
        "openapi": "3.1.0",
        "info": dict(info),
        "tags": [{"name": tag} for tag in tags],
        "paths": paths,
        "components": {
            "schemas": {"Error": _ERROR, **shared.schemas},
            "securitySchemes": SECURITY_SCHEMES,
        },
    }


def _operation(op: Operation, shared: Components) -> dict[str, Any]:
    out: dict[str, Any] = {
        "operationId": f"{op.method.lower()}_{openapi_path(op.path)}".replace("/", "_")
        .replace("{", "")
        .replace("}", ""),
        "summary": op.summary,
        "tags": [op.tag],
    }
    if op.scope is not None:
        out["description"] = f"Needs scope `{op.scope}` (an admin token has every scope)."
    out["security"] = _security(op.security)
    parameters = [
        {
            "name": name,
            "in": "path",
            "required": True,
            "description": text,
            "schema": {"type": "string"},
        }
        for name, text in op.params.items()
    ]
    parameters += [
        {"name": name, "in": "query", "required": False, "schema": shared.schema(rule)}
        for name, rule in op.query.items()
    ]
    if parameters:
        out["parameters"] = parameters
    body = _request_body(op, shared)
    if body:
        out["requestBody"] = body
    responses: dict[str, Any] = {}
    for status, reply in sorted(op.replies.items()):
        responses[str(status)] = _reply(reply, shared)
    error = ERROR_REF if op.error_json is None else shared.schema(op.error_json)
    for status in sorted({*op.errors, *SECURITY_ERRORS[op.security]}):
        responses[str(status)] = {
            "description": STATUS_TEXT[status],
            "content": {"application/json": {"schema": error}},
        }
    out["responses"] = responses
    return out


def _request_body(op: Operation, shared: Components) -> dict[str, Any] | None:
    content: dict[str, Any] = {}
    if op.body is not None:
        schema = shared.schema(op.body)
        content["application/json"] = {"schema": schema}
        if op.example is not None:
            content["application/json"]["example"] = dict(op.example)
    if op.form and op.body is not None:
        # Multipart: the image bytes in `image` (or `file`), every other field as form text
        # read per its JSON type ("800" is 800; `ops` is JSON text).
        fields = {name: {"type": "string"} for name in op.body.fields}
        fields.update({name: {"type": "string"} for name in op.body.ignored})
        binary = {"type": "string", "contentMediaType": "application/octet-stream"}
        fields.update({name: binary for name in op.files})
        named = " (or ".join(f"`{name}`" for name in op.files) + ")" * (len(op.files) - 1)
        content["multipart/form-data"] = {
            "schema": {
                "type": "object",
                "description": f"The image bytes in {named}; every other field of "
                "the JSON body as form text, read as its JSON type (`ops` as JSON text)",
                "properties": fields,
            },
            "encoding": {name: {"contentType": "image/*"} for name in op.files},
        }
    if op.raw_image:
        content["image/*"] = {"schema": {"type": "string", "contentMediaType": "image/*"}}
        if op.body is None:
            binary = {"type": "string", "contentMediaType": "application/octet-stream"}
            content["multipart/form-data"] = {
                "schema": {"type": "object", "properties": {"file": binary}, "required": ["file"]}
            }
    if not content:
        return None
    return {"required": True, "content": content}


def _reply(reply: Reply, shared: Components) -> dict[str, Any]:
    out: dict[str, Any] = {"description": reply.description}
    content: dict[str, Any] = {}
    if isinstance(reply.json, tuple):
        schemas = [shared.schema(rule) for rule in reply.json]
        content["application/json"] = {"schema": {"oneOf": schemas}}
    elif reply.json is not None:
        content["application/json"] = {"schema": shared.schema(reply.json)}
    if reply.image:
        content["image/*"] = {"schema": {"type": "string", "contentMediaType": "image/*"}}
    if content:
        out["content"] = content
    return out


def _security(kind: Security) -> list[dict[str, list[str]]]:
    if kind == "public":
        return []
    if kind == "admin":
        return [{"bearer": []}]
    return [{name: []} for name in SECURITY_SCHEMES]


SECURITY_SCHEMES: dict[str, dict[str, str]] = {
    "bearer": {
        "type": "http",
        "scheme": "bearer",
        "description": "Authorization: Bearer <API key or admin token>",
    },
    "apiKeyHeader": {"type": "apiKey", "in": "header", "name": "X-API-KEY"},
    "ailabapiKey": {"type": "apiKey", "in": "header", "name": "ailabapi-api-key"},
    "apiKeyQuery": {"type": "apiKey", "in": "query", "name": "api_key"},
    "appkeyQuery": {
        "type": "apiKey",
        "in": "query",
        "name": "appkey",
        "description": "also accepted as an `api_key` / `appkey` JSON or form field",
    },
}
_ERROR: Schema = {
    "type": "object",
    "description": "SPEC §4: every error, with Cache-Control: no-store",
    "properties": {
        "error": {
            "type": "object",
            "properties": {
                "code": {"type": "string", "description": "stable, machine-readable"},
                "message": {"type": "string"},
                "param": {"type": ["string", "null"], "description": "the field at fault"},
            },
            "required": ["code", "message"],
        }
    },
    "required": ["error"],
}
