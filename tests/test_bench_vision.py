"""bench/run.py --only vision's scripts, run for real in their smoke mode (small images, one
run each, every case still in a fresh process): they print JSON lines with the keys the
table reads, the table and footprint come out of them, and a missing script is a note.
vision_ocr.py (rapidocr's, no smoke mode: a minute at 12 MP) is left to the full bench."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

BENCH = Path(__file__).resolve().parent.parent / "bench"
sys.path.insert(0, str(BENCH))

import vision_report  # noqa: E402  # bench/ is not a package

TABLE_KEYS = {"case", "feature", "cpu_ms", "cpu_p90_ms", "wall_ms", "first_ms", "peak_rss_mb",
              "model_load_ms", "rss_start_mb", "rss_model_mb", "runs"}  # fmt: skip
FOOTPRINT_KEYS = {"kind", "what", "rss_before_mb", "rss_after_mb", "delta_mb", "first_use_ms",
                  "model_load_ms", "models_loaded", "imported"}  # fmt: skip


@pytest.fixture(scope="module")
def facts() -> dict[str, Any]:
    said: list[str] = []
    return vision_report.run(said.append, smoke=True, skip=frozenset({"ocr"}))


def test_the_background_and_document_scripts_print_one_line_per_case_with_the_table_keys(
    facts: dict[str, Any],
) -> None:
    assert [r["case"] for r in facts["bg"]] == ["baseline", "segmentation", "classical", "moderate"]
    assert [r["case"] for r in facts["doc"]] == ["type0", "type1", "type2", "type3", "type4"]
    for row in facts["bg"] + facts["doc"]:
        assert row.keys() >= TABLE_KEYS, row
        assert row["runs"] == 1
        assert 0 < row["cpu_ms"] <= row["cpu_p90_ms"]
        # each case is its own process: its peak is its own, not the parent's
        assert row["rss_start_mb"] <= row["rss_model_mb"] <= row["peak_rss_mb"] < 2000
    by_case = {r["case"]: r for r in facts["bg"]}
    # a model costs memory before any image: the NSFW net far more than the engine alone
    assert by_case["moderate"]["rss_model_mb"] - by_case["moderate"]["rss_start_mb"] > 20
    assert by_case["baseline"]["model_load_ms"] < by_case["moderate"]["model_load_ms"]
    assert all(r["model_load_ms"] is None for r in facts["doc"])  # classical + a child


def test_the_footprint_sizes_each_dependency_and_a_plain_worker_loads_no_model(
    facts: dict[str, Any],
) -> None:
    installs = {r["what"]: r for r in facts["footprint"] if r["kind"] == "install"}
    assert installs["opencv-python-headless"]["mb"] > 50
    assert installs["onnxruntime"]["mb"] > 10
    assert installs["repo: face_detection_full_range.tflite"]["mb"] > 0.5
    workers = {r["what"]: r for r in facts["footprint"] if r["kind"] in ("rss", "delivery")}
    assert set(workers) == {"faces", "selfie", "moderation", "ocr", "none"}
    for row in workers.values():
        assert row.keys() >= FOOTPRINT_KEYS, row
    assert workers["none"]["kind"] == "delivery"
    assert workers["none"]["models_loaded"] == [] and workers["none"]["imported"] == []
    assert workers["faces"]["models_loaded"] == ["blazeface-full-range"]
    assert workers["faces"]["faces"] == 1  # the astronaut
    assert workers["moderation"]["models_loaded"] == ["open_nsfw"]
    assert "onnxruntime" in workers["moderation"]["imported"]
    assert workers["moderation"]["delta_mb"] > workers["none"]["delta_mb"] + 20


def test_the_table_has_a_row_per_feature_and_the_g_face_against_g_smart_line(
    facts: dict[str, Any],
) -> None:
    assert {r["measure"] for r in facts["faces"]} >= set(vision_report.FACES)
    text = "\n".join(vision_report.report(facts))
    for feature in (
        "face detection",
        "face blur",
        "background removal, people",
        "background removal, product",
        "moderation",
        "correction type 0 (document crop + upright)",
        "correction type 2 (document crop + upright + enhance)",
        "correction type 4 (product crop + background removal)",
    ):
        assert f"| {feature}" in text, feature
    assert "cold delivery, group: g=face" in text
    assert "seed 003 over HTTP (vision_correction.py), type 2 at 0.48 MP: sync=1 " in text
    assert "| plain /t/ renders only |" in text
    assert "vision_ocr.py: not run (skipped)" in text
    met = {target: ok for target, _, ok in vision_report.targets(facts)}
    assert met["vision: a worker serving plain /t/ renders loads no model"]
    assert "vision: cold g=face <= 1.5 x the CPU of g=smart (12 MP)" in met


def test_a_missing_bench_script_is_a_note_in_the_report_not_a_crash() -> None:
    notes: list[str] = []
    said: list[str] = []
    assert vision_report.script("vision_not_written_yet.py", [], said.append, notes) == []
    assert notes == ["vision_not_written_yet.py: not in this checkout, skipped"]
    assert said == ["  vision_not_written_yet.py: missing, skipped"]
