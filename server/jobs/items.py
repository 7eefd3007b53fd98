"""One batch item: checked at submit, run by the engine, both exactly as POST
/v1/image/process checks and runs its body (the same schema, steps, Plan compilation and
process.run), so a batch renders what the same process requests would, into the same
results.

What is stored per item is the client's item as sent (JSON), plus the caller's asset
prefix and the public base its image_url is built on: the run parses it again, which is
cheap and keeps the queue free of Python objects.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from server import process, results
from server.errors import (
    ImgcdnError,
    InvalidOp,
    InvalidParam,
    QueueFull,
    StateUnavailable,
    StorageUnavailable,
)
from server.imagerefs import REF, Ref
from server.jobs.model import ItemOutcome
from server.ops import MAX_STEPS, STEP, check_step
from server.plan import Plan, compile_ops
from server.schema import Array, Choice, Obj

if TYPE_CHECKING:
    from server.runtime import Runtime

log = logging.getLogger("imgcdn")
# Our own capacity running short (the render queue full, storage or state failing) is not
# the item's fault: it is queued again, up to this many times, before it fails.
MAX_TRIES = 5
TRANSIENT = (QueueFull, StorageUnavailable, StateUnavailable)
ITEM = Obj(
    {
        "image": REF,
        "input": REF,
        "ops": Array(STEP, MAX_STEPS, "steps, run in this order"),
        "output": Obj(
            {"return": Choice(("url",), "url: a signed image_url (the only kind in a batch)")},
            title="BatchOutput",
        ),
    },
    description="One image and the steps to run on it, as POST /v1/image/process takes them",
    title="BatchItem",
)


def check(rt: Runtime, raw: object, path: str) -> tuple[Ref, Plan]:
    """The item at `path` (`items[3]`) validated: 400 naming the field, e.g.
    `items[3].ops[0].params.width` (invalid_op, as process names its steps)."""
    fields = ITEM.check(raw, path)
    given = [k for k in ("image", "input") if k in fields]
    if len(given) != 1:
        which = f"{path}.input" if given else f"{path}.image"
        raise InvalidParam(which, f"{path} needs its image, as image or as input (one of them)")
    try:
        ops = fields.get("ops") or []
        steps = [check_step(step, i, f"{path}.") for i, step in enumerate(ops)]
        plan = compile_ops(steps, rt.limits, [f"{path}.ops[{i}].params" for i in range(len(steps))])
    except InvalidParam as exc:
        if exc.param is not None and exc.param.startswith(f"{path}.ops"):
            raise InvalidOp(exc.param, exc.message) from None
        raise
    ref: Ref = fields[given[0]]
    return ref, plan


def spec(raw: dict[str, Any], prefix: str, base: str) -> dict[str, Any]:
    """What the store keeps for an item: the item as sent, and how to run it."""
    return {"item": raw, "prefix": prefix, "base": base}


async def run(rt: Runtime, stored: dict[str, Any], index: int, retry: bool) -> ItemOutcome | None:
    """Render the item; its outcome, or None when our own capacity was short and `retry`
    allows another try later."""
    try:
        ref, plan = check(rt, stored["item"], f"items[{index}]")
        outcome = await process.run(rt, ref, plan, stored["prefix"], with_bytes=False)
    except TRANSIENT as exc:
        if retry:
            return None
        return _failed(exc)
    except ImgcdnError as exc:  # the item's own fault, or its source's: not retried
        if exc.report:
            log.error("jobs: item %d failed", index, exc_info=exc)
        return _failed(exc)
    except Exception as exc:  # a bug: fail the item (retrying would fail alike), say so
        log.error("jobs: item %d failed", index, exc_info=exc)
        return _failed(ImgcdnError())
    return ItemOutcome("succeeded", result=results.described(rt, stored["base"], outcome.result))


def _failed(exc: ImgcdnError) -> ItemOutcome:
    error: dict[str, Any] = {"code": exc.code, "message": exc.message}
    if exc.param is not None:
        error["param"] = exc.param
    return ItemOutcome("failed", error=error)
