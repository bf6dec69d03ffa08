"""Depth maps as 16-bit PNG (images, colours and videos: :mod:`endogs.utils`)."""

from __future__ import annotations

import math

import numpy as np

PNG_MAX = 65535


def auto_depth_scale(max_depth: float) -> float:
    """The largest power of two ``s`` with ``max_depth * s <= 65535`` (PNG value = depth * s)."""
    if not np.isfinite(max_depth) or max_depth <= 0:
        return 1.0
    return float(2.0 ** math.floor(math.log2(PNG_MAX / max_depth)))


def depth_to_png16(depth: np.ndarray, scale: float) -> tuple[np.ndarray, int]:
    """uint16 ``round(depth * scale)`` (0 stays 0 = invalid) and the number of pixels clipped at 65535."""
    v = np.round(np.asarray(depth, np.float64) * scale)
    clipped = int((v > PNG_MAX).sum())
    return np.clip(v, 0, PNG_MAX).astype(np.uint16), clipped
