"""One processing request's work: the input's bytes -> a result, reused or rendered once.

The result id hashes the input bytes and the Plan's effective work (plus each watermark
image's bytes), so the same request is one result: a second one finds it in the result
store and renders nothing, and identical requests in flight together share one render.
The render itself is the delivery engine's (imaging/chain.py on pipeline.py's steps) in
the same render pool, under the same source limits and timeout.
"""

from __future__ import annotations

import base64
import hashlib
import time
from dataclasses import dataclass

from server import formats, inputs, metrics, results
from server.errors import ResultNotFound
from server.imagerefs import Ref
from server.imaging.chain import render_chain
from server.imaging.inspect import SourceInfo, probe
from server.imaging.metadata import describe
from server.imaging.vips import Cancel
from server.plan import Plan
from server.runtime import Runtime
from server.spec import Format, TransformSpec


@dataclass(frozen=True, slots=True)
class Outcome:
    result: results.Result
    reused: bool  # found in the result store (or joined a render in flight): nothing rendered
    body: bytes | None = None  # the bytes, when asked for (or this request rendered them)


def result_id(source_sha256: bytes, plan: Plan, marks: dict[int, bytes]) -> str:
    """A stable id for (input bytes, effective work): url-safe, 32 characters."""
    fmt: Format | str = plan.fmt or "source"
    hashes = {i: m.hex() for i, m in marks.items()}
    digest = hashlib.sha256(
        b"imgcdn-result-1\0" + source_sha256 + plan.canonical(fmt, hashes).encode()  # type: ignore[arg-type]  # "source" stands in
    ).digest()
    return base64.urlsafe_b64encode(digest[:24]).decode()


async def run(
    rt: Runtime, ref: Ref, plan: Plan, prefix: str, with_bytes: bool, ttl_s: int | None = None
) -> Outcome:
    """Identify the input (and watermark images), then reuse or render the result; with
    `with_bytes`, the Outcome carries the result's bytes (base64 and binary answers).
    `ttl_s`: the result's life when longer than IMGCDN_RESULT_TTL_S (results.ttl_of)."""
    source = await inputs.identify(rt, ref, prefix)
    marks: dict[int, inputs.Input] = {}
    for index, stage in enumerate(plan.stages):
        if stage.mark is not None:
            marks[index] = await inputs.identify(rt, stage.mark, prefix)
    rid = result_id(source.sha256, plan, {i: m.sha256 for i, m in marks.items()})
    found = await results.lookup(rt, rid)
    if found is not None:
        try:
            # Read before renewing: bytes swept since the lookup mean rendering again.
            body = await results.read(rt, found) if with_bytes else None
        except ResultNotFound:
            pass
        else:
            metrics.result("reused")
            return Outcome(await results.renew(rt, found, ttl_s), reused=True, body=body)

    rendered: list[bytes] = []

    async def work() -> results.Result:
        data = await source.read()
        mark_bytes = {i: await m.read() for i, m in marks.items()}
        fmt, body, width, height = await _render(rt, data, plan, mark_bytes, source.sha256)
        rendered.append(body)
        return await results.save(rt, rid, fmt, body, width, height, ttl_s)

    result, joined = await rt.result_flights.do(rid, work)
    if joined:  # the render we joined may have been saved with a shorter life
        result = await results.renew(rt, result, ttl_s)
    metrics.result("reused" if joined else "saved")
    body = rendered[0] if rendered else None
    if body is None and with_bytes:
        body = await results.read(rt, result)  # joined another request's render
    return Outcome(result, reused=joined, body=body)


async def _render(
    rt: Runtime, source: bytes, plan: Plan, marks: dict[int, bytes], sha256: bytes
) -> tuple[Format, bytes, int, int]:
    options = rt.render_options
    limits = rt.source_limits
    source_key = ("process-source", sha256)  # faces found in it are kept under its hash

    def job(cancel: Cancel) -> tuple[Format, bytes, int, int]:
        info = probe(source, limits)
        for mark in marks.values():
            probe(mark, limits)  # a watermark image meets the same limits as any source
        fmt = plan.fmt or output_format(info)
        began = time.perf_counter()
        out = render_chain(source, info, plan, fmt, options, cancel, marks, source_key)
        metrics.render_observed(fmt, time.perf_counter() - began)
        return fmt, out.body, out.width, out.height

    return await rt.pool.run(job)


def output_format(info: SourceInfo) -> Format:
    """The source's own kind, or PNG/JPEG for kinds no browser shows (SPEC §2's default)."""
    fmt, _ = formats.choose(TransformSpec(), info.output_kind, info.alpha, info.frames, "")
    return fmt


async def metadata(rt: Runtime, ref: Ref, prefix: str) -> dict[str, object]:
    """SPEC §6 metadata of the input: header and EXIF only, no pixel decode."""
    source = await inputs.load(rt, ref, prefix)
    limits = rt.source_limits

    def job(cancel: Cancel) -> dict[str, object]:
        return describe(source, probe(source, limits))

    return await rt.pool.run(job)
