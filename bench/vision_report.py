"""Issue #13's benchmark section for bench/run.py (`--only vision`): runs the vision scripts,
each feature in a fresh process of its own, and turns their JSON lines into one table
(feature | CPU ms median, p90 | wall ms | peak RSS MB | model load ms), the g=face against
g=smart line, the footprint table and the targets. Kept out of run.py, which is long enough.

The scripts belong to several people: vision_faces.py (faceperf) and vision_ocr.py
(rapidocr) are only read here, by their JSON keys. A missing or failing script is reported
in the table's notes, not raised.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import procstat

BENCH = Path(__file__).resolve().parent
Row = dict[str, Any]
OCR_CASES = {  # vision_ocr.py case -> the table's feature
    "ocr_photo": "OCR, photo of a page (what /v1/image/ocr does)",
    "ocr_scan": "OCR, 12 MP flat scan",
    "corners": "document corners (full-size decode included)",
    "correct": "document corners + warp + upright + enhance",
    "correct_ocr": "the same, then OCR",
    "ocr_sign": "OCR (Tesseract), a sign photographed at an angle",
    "rapid_photo": "OCR (rapidocr), photo of a page",
    "rapid_scan": "OCR (rapidocr), 12 MP flat scan",
    "rapid_sign": "OCR (rapidocr), a sign photographed at an angle",
}
FACES = {  # vision_faces.py measure -> the table's feature
    "face_detection_12mp": "face detection (7 faces; decode shrunk on load + detect)",
    "group_blur_faces_12mp_w1600": "face blur (delivery w=1600&blur_faces=4)",
    "group_plain_12mp_w1600": "  the same render without blur (w=1600)",
}
RATIOS = ("group", "portrait", "no_faces")  # vision_faces.py's photos for g=face / g=smart


def script(name: str, args: list[str], log: Callable[[str], None], notes: list[str]) -> list[Row]:
    """The JSON lines bench/`name` prints; [] with a note when it is missing or fails."""
    path = BENCH / name
    if not path.exists():
        notes.append(f"{name}: not in this checkout, skipped")
        log(f"  {name}: missing, skipped")
        return []
    log(f"  {name} {' '.join(args)}")
    done = subprocess.run(  # noqa: S603 - our own script, this interpreter
        [sys.executable, str(path), *args], capture_output=True, text=True, cwd=BENCH.parent
    )
    rows = []
    for line in done.stdout.splitlines():
        if line.startswith("{"):
            rows.append(json.loads(line))
    if done.returncode != 0:
        tail = (done.stderr.strip().splitlines() or ["(no stderr)"])[-1]
        notes.append(f"{name}: exited {done.returncode}: {tail[:200]}")
        log(f"  {name}: exited {done.returncode}: {tail[:200]}")
    return rows


SCRIPTS = {  # facts key -> (script, its arguments, in smoke mode)
    "faces": ("vision_faces.py", ["--runs", "11"], ["--runs", "1"]),
    "bg": ("vision_bg.py", [], ["--smoke"]),
    "ocr": ("vision_ocr.py", [], []),  # no smoke mode of its own: the full run (~1 min)
    "doc": ("vision_doc.py", [], ["--smoke"]),
    "correction": ("vision_correction.py", [], ["--smoke"]),  # seed 003 over HTTP
    "footprint": ("vision_footprint.py", [], ["--smoke"]),
}


def run(
    log: Callable[[str], None], smoke: bool = False, skip: frozenset[str] = frozenset()
) -> dict[str, Any]:
    """Every vision script once (but those in `skip`); the facts report() and targets() read."""
    facts: dict[str, Any] = {"notes": [], "smoke": smoke}
    busy, ours, start = procstat.machine_busy_seconds(), _children_cpu(), time.monotonic()
    for key, (name, full, small) in SCRIPTS.items():
        if key in skip:
            facts[key] = []
            facts["notes"].append(f"{name}: not run (skipped)")
        else:
            facts[key] = script(name, small if smoke else full, log, facts["notes"])
    # What the rest of the machine took meanwhile (a share of all cores): the scripts' CPU
    # figures are their own, but a busy machine stretches wall times and skews medians.
    seconds = max(1e-3, time.monotonic() - start)
    other = procstat.machine_busy_seconds() - busy - (_children_cpu() - ours)
    facts["seconds"] = round(seconds)
    facts["other_cpu_pct"] = round(100 * max(0.0, other) / seconds / (os.cpu_count() or 1))
    return facts


def _children_cpu() -> float:
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return kids.ru_utime + kids.ru_stime


def _cell(value: Any) -> str:
    return "" if value is None else str(value)


def rows(facts: dict[str, Any]) -> list[Row]:
    """One row per feature, from whichever script measured it."""
    out: list[Row] = []
    faces = {r.get("measure"): r for r in facts["faces"]}
    face_peak = faces.get("peak_rss_mb", {}).get("value")
    loads = {r["what"]: r.get("model_load_ms") for r in facts["footprint"] if r["kind"] == "rss"}
    for measure, feature in FACES.items():
        if measure in faces:
            r = faces[measure]
            out.append(
                {
                    "feature": feature,
                    "cpu_ms": r["cpu_ms"],
                    "wall_ms": r["wall_ms"],
                    "peak_rss_mb": face_peak,
                    # the detector is built once per worker: shown on the first row only
                    "model_load_ms": loads.get("faces")
                    if measure == "face_detection_12mp"
                    else None,
                    "source": "vision_faces.py",
                }
            )
    for r in facts["bg"] + facts["doc"]:
        out.append(
            {**r, "source": "vision_doc.py" if r["case"].startswith("type") else "vision_bg.py"}
        )
    for r in facts["ocr"]:
        peak = f"{r['peak_rss_mb']}"
        if "tesseract_peak_rss_mb" in r:
            peak += f" (+{r['tesseract_peak_rss_mb']} Tesseract)"
        out.append(
            {
                "feature": OCR_CASES.get(r["case"], r["case"]),
                "cpu_ms": r["cpu_ms"],
                "cpu_p90_ms": r.get("cpu_p90_ms"),
                "wall_ms": r["wall_ms"],
                "peak_rss_mb": peak,
                "model_load_ms": None,
                "source": "vision_ocr.py",
            }
        )
    return out


def ratios(facts: dict[str, Any]) -> list[tuple[str, float, float, float]]:
    """(photo, g=smart CPU ms, g=face CPU ms, face / smart) per photo vision_faces.py ran."""
    cpu = {r.get("measure"): r.get("cpu_ms") for r in facts["faces"]}
    found = []
    for photo in RATIOS:
        smart, face = cpu.get(f"{photo}_g_smart_12mp"), cpu.get(f"{photo}_g_face_12mp")
        if smart and face:
            found.append((photo, smart, face, round(face / smart, 2)))
    return found


def report(facts: dict[str, Any]) -> list[str]:
    out = [
        "## Vision (issue #13): 12 MP, each feature in a fresh process",
        "",
        "| feature | CPU ms (median, p90) | wall ms | peak RSS MB | model load ms | script |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows(facts):
        cpu = f"{r['cpu_ms']}" + (f", {r['cpu_p90_ms']}" if r.get("cpu_p90_ms") else "")
        out.append(
            f"| {r['feature']} | {cpu} | {r['wall_ms']} | {r['peak_rss_mb']} "
            f"| {_cell(r.get('model_load_ms'))} | {r['source']} |"
        )
    out.append("")
    for photo, smart, face, ratio in ratios(facts):
        out.append(
            f"- cold delivery, {photo}: g=face {face} CPU ms against g=smart {smart}: {ratio} x"
        )
    http = {r["case"]: r for r in facts["correction"]}
    if {"http_sync", "http_async"} <= set(http):
        sync, late = http["http_sync"], http["http_async"]
        out.append(
            f"- seed 003 over HTTP (vision_correction.py), type 2 at {sync['megapixels']:g} MP: "
            f"sync=1 {sync['latency_ms']} ms, sync=0 + polling every 20 ms "
            f"{late['latency_ms']} ms end to end"
        )
    out += [f"- note: {n}" for n in facts["notes"]]
    if "seconds" in facts:
        out.append(
            f"- {facts['seconds']} s in all; the rest of the machine took "
            f"{facts['other_cpu_pct']} % of its cores meanwhile"
        )
    out += [
        "",
        "### Footprint (bench/vision_footprint.py)",
        "",
        "| dependency | from | installed MB |",
        "|---|---|---|",
    ]
    for r in facts["footprint"]:
        if r["kind"] == "install":
            mb = r["mb"] if r["installed"] else "not installed"
            out.append(f"| {r['what']} | {r['from']} | {mb} |")
    out += [
        "",
        "| worker | RSS before MB | after MB | + MB | model load ms | first use ms "
        "| models loaded | imported |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in facts["footprint"]:
        if r["kind"] in ("rss", "delivery"):
            what = "plain /t/ renders only" if r["kind"] == "delivery" else r["what"]
            out.append(
                f"| {what} | {r['rss_before_mb']} | {r['rss_after_mb']} | {r['delta_mb']} "
                f"| {_cell(r.get('model_load_ms'))} | {r['first_use_ms']} "
                f"| {', '.join(r['models_loaded']) or 'none'} "
                f"| {', '.join(r['imported']) or 'none'} |"
            )
    return [*out, ""]


def targets(facts: dict[str, Any]) -> list[tuple[str, str, bool]]:
    found = []
    cold = ratios(facts)
    if cold:
        found.append(
            (
                "vision: cold g=face <= 1.5 x the CPU of g=smart (12 MP)",
                " / ".join(f"{p} {r} x" for p, _, _, r in cold),
                max(r for *_, r in cold) <= 1.5,
            )
        )
    detect = [r for r in facts["faces"] if r.get("measure") == "face_detection_12mp"]
    if detect:
        ms = detect[0]["cpu_ms"]
        found.append(("vision: face detection <= 100 ms at 12 MP", f"{ms} CPU ms", ms <= 100))
    delivery = [r for r in facts["footprint"] if r["kind"] == "delivery"]
    if delivery:
        d = delivery[0]
        found.append(
            (
                "vision: a worker serving plain /t/ renders loads no model",
                f"models: {d['models_loaded'] or 'none'}; imported: {d['imported'] or 'none'}",
                not d["models_loaded"] and not {"cv2", "onnxruntime"} & set(d["imported"]),
            )
        )
    return found
