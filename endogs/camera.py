"""Pinhole camera shared by data, rendering, training, evaluation and the viewer.

Conventions: ``K`` is the 3x3 intrinsic matrix in pixels, with pixel centres at integer + 0.5 as in
gsplat (so the geometric image centre is ``(W/2, H/2)``). ``c2w`` is the 4x4 camera-to-world
transform with OpenCV axes: x right, y down, z forward. ``viewmat`` (world-to-camera) is its inverse.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

import numpy as np


@dataclass(frozen=True)
class Camera:
    K: np.ndarray  # [3, 3] float64
    c2w: np.ndarray  # [4, 4] float64, OpenCV axes
    width: int
    height: int
    # OpenCV distortion coefficients (k1, k2, p1, p2, k3) of the source images, when they are
    # not undistorted; None means an ideal pinhole.
    dist: Optional[np.ndarray] = field(default=None, compare=False)

    def __post_init__(self) -> None:
        K = np.asarray(self.K, dtype=np.float64)
        c2w = np.asarray(self.c2w, dtype=np.float64)
        if K.shape != (3, 3):
            raise ValueError(f"Camera.K must be 3x3, got {K.shape}")
        if c2w.shape != (4, 4):
            raise ValueError(f"Camera.c2w must be 4x4, got {c2w.shape}")
        if int(self.width) <= 0 or int(self.height) <= 0:
            raise ValueError(f"Camera size must be positive, got {self.width}x{self.height}")
        object.__setattr__(self, "K", K)
        object.__setattr__(self, "c2w", c2w)
        object.__setattr__(self, "width", int(self.width))
        object.__setattr__(self, "height", int(self.height))

    @property
    def fx(self) -> float:
        return float(self.K[0, 0])

    @property
    def fy(self) -> float:
        return float(self.K[1, 1])

    @property
    def cx(self) -> float:
        return float(self.K[0, 2])

    @property
    def cy(self) -> float:
        return float(self.K[1, 2])

    @property
    def viewmat(self) -> np.ndarray:
        """World-to-camera 4x4 (gsplat's ``viewmats``)."""
        return np.linalg.inv(self.c2w)

    @property
    def position(self) -> np.ndarray:
        return self.c2w[:3, 3].copy()

    def resized(self, width: int, height: int) -> "Camera":
        """The same camera for an image resampled to ``width`` x ``height``."""
        sx, sy = width / self.width, height / self.height
        K = self.K.copy()
        K[0] *= sx
        K[1] *= sy
        return Camera(K, self.c2w, width, height, self.dist)

    def cropped(self, left: int = 0, top: int = 0, right: int = 0, bottom: int = 0) -> "Camera":
        """The same camera for an image with the given pixel borders removed."""
        K = self.K.copy()
        K[0, 2] -= left
        K[1, 2] -= top
        return Camera(K, self.c2w, self.width - left - right, self.height - top - bottom, self.dist)

    def with_pose(self, c2w: np.ndarray) -> "Camera":
        return Camera(self.K, c2w, self.width, self.height, self.dist)

    def unproject(self, depth: np.ndarray, uv: Optional[np.ndarray] = None) -> np.ndarray:
        """World points of pixels with depth (z along the optical axis).

        With ``uv`` None, ``depth`` is [H, W] and the result is [H, W, 3]; otherwise ``uv`` is [M, 2]
        pixel coordinates (continuous, centres at +0.5) and ``depth`` is [M]; the result is [M, 3].
        """
        if uv is None:
            h, w = depth.shape
            u, v = np.meshgrid(np.arange(w) + 0.5, np.arange(h) + 0.5)
        else:
            u, v = uv[..., 0], uv[..., 1]
        x = (u - self.cx) / self.fx * depth
        y = (v - self.cy) / self.fy * depth
        pts = np.stack([x, y, depth], axis=-1)
        return pts @ self.c2w[:3, :3].T + self.c2w[:3, 3]

    def project(self, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Pixel coordinates [M, 2] (centres at +0.5) and camera-space depth [M] of world points [M, 3]."""
        vm = self.viewmat
        pc = points @ vm[:3, :3].T + vm[:3, 3]
        z = pc[..., 2]
        with np.errstate(divide="ignore", invalid="ignore"):
            u = self.fx * pc[..., 0] / z + self.cx
            v = self.fy * pc[..., 1] / z + self.cy
        return np.stack([u, v], axis=-1), z


def cameras_move(c2ws, tol: float = 1e-9) -> bool:
    """True when any camera pose (a sequence of [4, 4] camera-to-world arrays) differs from the first."""
    first = np.asarray(c2ws[0])
    return any(not np.allclose(np.asarray(c), first, atol=tol, rtol=0.0) for c in c2ws[1:])
