"""Images: conversion to uint8, the one depth colourmap, and resampling to a (down)scaled size.

Depth colour convention (everywhere: eval report, export, video preview, viewer): **near is warm,
far is cold** - with the turbo colourmap, depth ``lo`` (near) is dark red, depth ``hi`` (far) is dark
blue; invalid pixels are black. :func:`depth_unit` is that direction as a number (1 = near, 0 = far)
for callers with their own colour table (the viewer's colourmap menu).
"""

from __future__ import annotations

from typing import Literal, Optional

import cv2
import numpy as np

Resample = Literal["area", "nearest"]


def to_uint8(img: np.ndarray) -> np.ndarray:
    """uint8 of an image in [0, 1] (NaN -> 0, clipped, rounded); uint8 input is returned as is."""
    if img.dtype == np.uint8:
        return img
    return (np.clip(np.nan_to_num(img, nan=0.0), 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def depth_unit(depth: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """Depth as a position on a colourmap: 1 at ``lo`` (near), 0 at ``hi`` (far), clipped to [0, 1]."""
    return np.clip((hi - np.asarray(depth, np.float64)) / max(hi - lo, 1e-12), 0.0, 1.0)


def colorize_depth(depth: np.ndarray, lo: float, hi: float, valid: Optional[np.ndarray] = None) -> np.ndarray:
    """uint8 RGB [H, W, 3] of a depth map: turbo with near (``lo``) red and far (``hi``) blue; pixels outside
    ``valid`` (default: depth <= 0) are black."""
    x = (depth_unit(depth, lo, hi) * 255 + 0.5).astype(np.uint8)
    rgb = cv2.cvtColor(cv2.applyColorMap(x, cv2.COLORMAP_TURBO), cv2.COLOR_BGR2RGB)
    rgb[~(np.asarray(depth) > 0) if valid is None else ~valid] = 0
    return rgb


def downscaled_size(width: int, height: int, downscale: float) -> tuple[int, int]:
    """(width, height) after dividing by ``downscale`` (rounded); ``downscale <= 1`` keeps the size."""
    if downscale > 1:
        return int(round(width / downscale)), int(round(height / downscale))
    return width, height


def resample(a: np.ndarray, size: tuple[int, int], how: Resample) -> np.ndarray:
    """``a`` resized to ``size`` (width, height): ``area`` for images, ``nearest`` for depth and masks
    (bool masks stay bool); the same size returns ``a`` unchanged."""
    if a.shape[1] == size[0] and a.shape[0] == size[1]:
        return a
    if a.dtype == bool:
        return cv2.resize(a.astype(np.uint8), size, interpolation=cv2.INTER_NEAREST).astype(bool)
    return cv2.resize(a, size, interpolation=cv2.INTER_AREA if how == "area" else cv2.INTER_NEAREST)


def encode_png(img: np.ndarray) -> bytes:
    """PNG bytes of an RGB image (float in [0, 1] or uint8) or a grey uint8/uint16 image."""
    if img.dtype != np.uint16:
        img = to_uint8(img)
    if img.ndim == 3:
        img = cv2.cvtColor(img, cv2.COLOR_RGB2BGR)
    ok, buf = cv2.imencode(".png", img)
    if not ok:  # pragma: no cover - cv2 failure
        raise RuntimeError("PNG encoding failed")
    return buf.tobytes()
