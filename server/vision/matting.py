"""An operator's own matting model (`IMGCDN_BG_MODEL=/path/model.onnx`), with rembg's
conventions, run by onnxruntime: input NCHW float32 RGB, scaled to 0..1 by the image's
maximum then normalised with ImageNet's mean and std, at the model's own square size
(320 when the graph leaves it open, as u2net's does); output 0 is the mask, [0, 0] of an
N x 1 x H x W tensor, min-max normalised. Any model rembg accepts (u2net, isnet, silueta,
birefnet) therefore works here unchanged.
"""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np
import numpy.typing as npt

from server.vision.models import load

MEAN = np.array([0.485, 0.456, 0.406], np.float32)
STD = np.array([0.229, 0.224, 0.225], np.float32)
DEFAULT_SIDE = 320


def _session(path: str) -> Any:
    import onnxruntime as ort  # only when a model is configured: 20 MB of import

    options = ort.SessionOptions()
    # The arena keeps a model's peak (GBs for ISNet) for the life of the worker.
    options.enable_cpu_mem_arena = False
    return ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])


def _side(session: Any) -> tuple[int, int]:
    shape = session.get_inputs()[0].shape
    h, w = shape[2], shape[3]
    if isinstance(h, int) and isinstance(w, int) and h > 0 and w > 0:
        return h, w
    return DEFAULT_SIDE, DEFAULT_SIDE


def run(path: str, rgb: npt.NDArray[np.uint8]) -> npt.NDArray[np.float32]:
    """P(subject) per pixel of `rgb` from the model at `path`."""
    session = load(f"matting:{path}", lambda: _session(path))
    h, w = _side(session)
    small = cv2.resize(rgb, (w, h), interpolation=cv2.INTER_AREA).astype(np.float32)
    small = (small / max(float(small.max()), 1e-6) - MEAN) / STD
    blob = np.ascontiguousarray(small.transpose(2, 0, 1)[None], np.float32)
    name = session.get_inputs()[0].name
    out = np.asarray(session.run(None, {name: blob})[0], np.float32)[0, 0]
    low, high = float(out.min()), float(out.max())
    out = (out - low) / (high - low) if high > low else np.zeros_like(out)
    return np.asarray(cv2.resize(out, (rgb.shape[1], rgb.shape[0])), np.float32)
