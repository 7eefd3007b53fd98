"""Seed 000's request fields -> processing-API steps, and a result -> its JSON `data`.
Pure: no I/O, no Request.

The seed's fields (`width`, `height`, `quality`, `format`, `x`, `y`, `preserve_exif`,
`progressive`) and each op's own params (ops.py: `fit`, `sigma`, `direction`, ...) map onto
the ops of server/ops.py, validated by the same schema objects; nothing is rendered here.
Names the seed has and we spell otherwise: `angle` is rotate's `degrees`, `preserve_exif`
is the encoding's `keep_metadata`.
"""

from __future__ import annotations

import base64
from typing import Any

from server.errors import InvalidParam
from server.imagerefs import REF
from server.ops import FORMAT, MAX_STEPS, OPS, STEP_PARAMS
from server.plan import Plan
from server.results import Result
from server.schema import Array, Bool, Choice, Custom, Field, Int, Obj, Text

# The seed's operations, each one of our ops (metadata is the metadata engine's answer).
OPERATIONS = (
    "resize",
    "crop",
    "convert",
    "compress",
    "rotate",
    "flip",
    "blur",
    "sharpen",
    "watermark",
    "trim",
    "smart_crop",
)
ENDPOINTS = (*OPERATIONS, "metadata")
GROUPS = ("basic", "camera", "location", "temporal", "device", "file")  # metadata.describe's
DEFAULT_QUALITY = 80  # the seed: "JPEG compression quality level (1-100 default: 80)"
SEED_ONLY = {"angle": "degrees", "preserve_exif": "keep_metadata"}
CREDENTIALS = frozenset({"api_key", "appkey"})
RESPONSE = Choice(("binary", "json"), "binary (default): the image bytes; json: the envelope")
ENCODING: dict[str, Field] = {
    "format": FORMAT,
    "quality": Int(1, 100, "1..100; default 80 for JPEG, WebP and AVIF"),
    "progressive": Bool("progressive JPEG (interlaced PNG/GIF)"),
    "preserve_exif": Bool("keep the source's EXIF (GPS included), XMP and IPTC"),
}
OUTPUT = Obj({**ENCODING, "response": RESPONSE}, description="the encoding and answer's form")


def _image(value: object, path: str, text: bool) -> Any:
    # The seed's clients have no asset ids: a JSON string that is no URL is base64.
    if isinstance(value, str) and not value.lower().startswith(("http://", "https://", "data:")):
        value = {"base64": value}
    return REF.check(value, path, text)


SOURCE: dict[str, Field] = {
    "image": Custom(_image, REF.json_schema, "JSON: base64, a data: URL or an http(s) URL"),
    "image_url": Text(8192, "an http(s) URL of the image, fetched SSRF-safely"),
    "idempotency_key": Text(255, "replays the first answer for 24 h", r"[\x21-\x7e]+"),
}


def _own_params() -> dict[str, Field]:
    """Every param of the seed's operations, as ops.py declares it (one spelling each)."""
    found: dict[str, Field] = {}
    for name in OPERATIONS:
        for param, rule in OPS[name].params.fields.items():
            found.setdefault(param, rule)
    found["angle"] = found["degrees"]
    return found


OWN = _own_params()
# The seed lists these for every operation (x and y even as "required"): an operation that
# has no use for one ignores it rather than refusing a request its docs told it to send.
SEED_FIELDS = frozenset({"width", "height", "x", "y"})
# The single-op endpoint's form: the seed's fields, every op's params, the output.
SINGLE = Obj(
    {**SOURCE, **OWN, **ENCODING, "output": OUTPUT, "response": RESPONSE},
    description="POST /api/v1/image-processing/{operation}: one operation on one image",
    ignored=CREDENTIALS,
)
STEP = Custom(
    lambda v, p, t: v,
    {
        "type": "object",
        "description": "{operation (or type), ...its params} or {operation, params: {...}}",
        "properties": {
            "operation": {"type": "string", "enum": list(OPERATIONS)},
            "type": {"type": "string", "enum": list(OPERATIONS)},
            "params": {"type": "object"},
        },
    },
)
PIPELINE = Obj(
    {**SOURCE, **ENCODING, "operations": Array(STEP, MAX_STEPS), "output": OUTPUT},
    frozenset({"operations"}),
    "POST /image-processing: operations in order, encoded once at the end",
    ignored=CREDENTIALS,
)

Step = tuple[str, dict[str, Any]]


def single_steps(operation: str, fields: dict[str, Any]) -> tuple[list[Step], list[str]]:
    """One operation's steps (and each step's error path) from the single-op form."""
    allowed = OPS[operation].params.fields
    sizing = OPS["resize"].params.fields
    # The seed's width/height are "for resize": sent with another op, resize first.
    resize_first = operation not in ("resize", "crop", "smart_crop") and bool(
        fields.keys() & {"width", "height"}
    )
    # Encoding fields (quality, format) are every operation's: the final encode takes them.
    for name in fields.keys() & (OWN.keys() - SEED_FIELDS - ENCODING.keys()):
        if _ours(name) not in allowed and not (resize_first and name in sizing):
            raise InvalidParam(name, f"{name} does not apply to {operation}")
    own = {_ours(k): v for k, v in fields.items() if _ours(k) in allowed}
    steps: list[Step] = []
    if resize_first:  # the values were checked by SINGLE, with ops.py's own rules
        steps.append(("resize", _pick(fields, sizing)))
    if operation == "crop":
        own.setdefault("x", 0)  # the seed: pixels from the left/top edge; 0 when not sent
        own.setdefault("y", 0)
    if operation == "rotate" and "degrees" not in own:
        raise InvalidParam("angle", "rotate needs angle: degrees clockwise, e.g. 90")
    for name in sorted(OPS[operation].params.required - own.keys() - fields.keys()):
        raise InvalidParam(name, f"{operation} needs {name}")
    steps.append((operation, own))
    return steps, [""] * len(steps)


def described(
    result: Result,
    body: bytes,
    url: str,
    plan: Plan,
    source_bytes: int,
    meta: dict[str, Any],
    steps: list[Step],
) -> dict[str, Any]:
    """The JSON form's `data`: the result (`url` is its signed image_url) and the source's
    metadata groups (`meta`: metadata.describe of the source)."""
    return {
        "processed_image": base64.b64encode(body).decode(),
        "image_url": url,
        "size_bytes": result.bytes,
        "original_size_bytes": source_bytes,
        "dimensions": {"width": result.width, "height": result.height},
        "format_info": {
            "format": result.fmt,
            "mime": result.mime,
            "extension": result.ext,
            "progressive": plan.progressive,
            "exif_preserved": plan.keep_metadata,
        },
        # original / result: 4.0 means a quarter of the bytes (above 1 is smaller).
        "compression_ratio": round(source_bytes / max(1, result.bytes), 3),
        "quality_used": plan.quality,
        "operations": [name for name, _ in steps],
        "metadata": {name: meta["exif"].get(name, {}) for name in GROUPS},
    }


def pipeline_steps(raw_steps: list[Any]) -> tuple[list[Step], list[str]]:
    """`operations` -> steps; errors name `operations[i].field` as the client wrote it."""
    steps: list[Step] = []
    paths: list[str] = []
    for index, raw in enumerate(raw_steps):
        path = f"operations[{index}]"
        if not isinstance(raw, dict):
            raise InvalidParam(path, f"{path} must be an object like {{operation, ...params}}")
        name = raw.get("operation", raw.get("type"))
        if not isinstance(name, str) or name not in OPERATIONS:
            raise InvalidParam(
                f"{path}.operation",
                f"{path}.operation must be one of {', '.join(OPERATIONS)}, got {name!r}",
            )
        flat = {k: v for k, v in raw.items() if k not in ("operation", "type", "params")}
        nested = raw.get("params", {})
        if not isinstance(nested, dict):
            raise InvalidParam(f"{path}.params", f"{path}.params must be an object")
        where = f"{path}.params" if nested else path
        params = {_ours(k): v for k, v in {**flat, **nested}.items()}
        if name == "rotate" and "degrees" not in params:
            raise InvalidParam(f"{where}.angle", "rotate needs angle: degrees clockwise")
        if name == "crop":
            params.setdefault("x", 0)
            params.setdefault("y", 0)
        if "quality" in params:  # the seed's 1..100 here too (the engine would take 0)
            SINGLE.fields["quality"].check(params["quality"], f"{where}.quality")
        steps.append((name, STEP_PARAMS[name].check(params, where)))
        paths.append(where)
    return steps, paths


def encoding(fields: dict[str, Any]) -> dict[str, Any]:
    """The final encoding step's params: `output`'s fields win over the top level's."""
    chosen = {k: v for k, v in fields.items() if k in ENCODING}
    chosen.update({k: v for k, v in fields.get("output", {}).items() if k in ENCODING})
    return {_ours(k): v for k, v in chosen.items()}


def wants_json(fields: dict[str, Any], query: str | None, accept: str) -> bool:
    """The JSON envelope when asked by `output.response` / `response` (field or query), or by
    an Accept that names application/json and no image type or wildcard: axios and others
    send `application/json, text/plain, */*` by default, and those clients want bytes."""
    chosen = fields.get("output", {}).get("response") or fields.get("response")
    if chosen is None and query is not None:
        chosen = RESPONSE.check(query, "response")
    if chosen is not None:
        return bool(chosen == "json")
    accept = accept.lower()
    return "application/json" in accept and "*/*" not in accept and "image/" not in accept


def _pick(fields: dict[str, Any], names: Any) -> dict[str, Any]:
    return {k: v for k, v in fields.items() if k in names}


def _ours(name: str) -> str:
    return SEED_ONLY.get(name, name)
