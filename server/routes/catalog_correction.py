"""Seed 003's drop-in endpoints (SPEC §10): rows of the operation table routes/catalog.py
assembles. The handler (routes/correction.py) reads its fields by hand, as form text or
JSON, so these shapes describe what it accepts; tests/test_openapi.py holds them to it and
validates real answers against them. Every answer is the seed's {status, message, data}."""

from __future__ import annotations

from server.openapi import Operation, Reply
from server.routes.correction import CHOICES, CREDENTIALS, PATH
from server.schema import Field, Int, Obj
from server.shapes import described

ERRORS = (400, 404, 409, 413, 415, 422, 429, 503, 504)
_TEXT = described({"type": "string"})
_STAMP = described({"type": "string"}, "Unix seconds as a string; empty until then")
_STATUS = Int(100, 599, "the HTTP status, repeated")


def _choice(name: str, text: str) -> Field:
    values = CHOICES[name]
    # A form sends text: "1" is 1.
    return described({"enum": [*values, *map(str, values)]}, text)


BODY = Obj(
    {
        "image_url": described({"type": "string"}, "http(s) URL of the image; or image_file"),
        "sync": _choice("sync", "0 (default): answer a task_id to poll; 1: wait for the result"),
        "type": _choice(
            "type",
            "0 document crop + upright; 1 text enhancement (default); 2 both; "
            "3 product crop; 4 product crop + background removal",
        ),
        "return_type": _choice(
            "return_type", "1 (default) an image URL valid 1 hour; 2 base64; 3 bytes (sync=1)"
        ),
    },
    description="One of image_url or (multipart) image_file",
    title="CorrectionRequest",
    ignored=frozenset(CREDENTIALS),
)
TICKET = Obj({"task_id": _TEXT}, frozenset({"task_id"}), title="CorrectionTicket")
TASK = Obj(
    {
        "task_id": _TEXT,
        "created_at": _STAMP,
        "processed_at": _STAMP,
        "completed_at": _STAMP,
        "image": described({"type": "string"}, "URL or base64 per return_type; empty until done"),
        "progress": Int(0, 100, "100 once ended"),
        "state": Int(-1, 4, "1 succeeded, 4 queued (>1 processing), -1 failed"),
    },
    frozenset(
        {"task_id", "created_at", "processed_at", "completed_at", "image", "progress", "state"}
    ),
    title="CorrectionTask",
)
ERROR_DATA = Obj(
    {"code": _TEXT, "message": _TEXT, "param": _TEXT},
    frozenset({"code", "message"}),
    "imgcdn's error code, message and the field at fault",
    title="CorrectionErrorData",
)


def _envelope(data: Field, title: str) -> Obj:
    fields = {"status": _STATUS, "message": _TEXT, "data": data}
    return Obj(fields, frozenset(fields), title=title)


def correction() -> list[Operation]:
    return [
        Operation(
            "POST",
            PATH,
            "Seed 003: crop, upright and enhance a document or product photo (sync or async)",
            "seed 003",
            "key",
            scope="image.process",
            body=BODY,
            form=True,
            files=("image_file",),
            replies={
                200: Reply(
                    "sync=0: the task_id; sync=1: the result (return_type 3: the image bytes)",
                    json=(
                        _envelope(TICKET, "CorrectionSubmitted"),
                        _envelope(TASK, "CorrectionResult"),
                    ),
                    image=True,
                )
            },
            errors=ERRORS,
            error_json=_envelope(ERROR_DATA, "CorrectionError"),
        ),
        Operation(
            "GET",
            PATH + "/{task_id}",
            "Seed 003: an async task's state, and its image once done",
            "seed 003",
            "key",
            scope="image.process",
            params={"task_id": "the task_id the POST answered"},
            replies={
                200: Reply(
                    "The task (state -1: failed, message says why)",
                    json=_envelope(TASK, "CorrectionResult"),
                )
            },
            errors=ERRORS,
            error_json=_envelope(ERROR_DATA, "CorrectionError"),
        ),
    ]
