"""Dense stereo depth on rectified pairs: OpenCV StereoSGBM (3-way), left-right check, depth in mm.

Facts used (shared VIDEO_NOTES.md, measured on SCARED): pad both images by numDisparities columns on
the left or SGBM leaves the first numDisparities columns empty; the right disparity comes from the
same matcher on the mirrored, swapped pair; specular highlights get wrong depth that the LR check
misses in part, so they are masked out.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np


@dataclass
class StereoResult:
    depth: np.ndarray  # float32 [H, W] mm, 0 = invalid
    disparity: np.ndarray  # float32 [H, W] px (left), <= 0 invalid
    valid: np.ndarray  # bool [H, W]
    highlights: np.ndarray  # bool [H, W] (dilated)


def highlight_mask(rgb: np.ndarray, threshold: int, radius: int) -> np.ndarray:
    """Specular highlights: darkest channel >= threshold, dilated by ``radius`` px."""
    if threshold > 255:
        return np.zeros(rgb.shape[:2], bool)
    m = (rgb.min(axis=2) >= threshold).astype(np.uint8)
    if radius > 0 and m.any():
        ker = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1))
        m = cv2.dilate(m, ker)
    return m > 0


def auto_num_disparities(focal: float, baseline: float, depth_min: float) -> int:
    """Smallest multiple of 16 covering the disparity of the nearest valid depth."""
    return int(max(16, 16 * math.ceil(focal * baseline / depth_min / 16.0)))


class StereoMatcher:
    """SGBM with left padding and a left-right consistency check; depth = f·b / disparity from Q."""

    def __init__(self, Q: np.ndarray, width: int, num_disparities: int, block_size: int = 5,
                 lr_max_diff: float = 1.0, depth_min: float = 10.0, depth_max: float = 250.0,
                 highlight_threshold: int = 240, highlight_dilate: float = 5.0):
        self.Q = np.asarray(Q, np.float64)
        self.nd = int(num_disparities)
        self.lr_max_diff = float(lr_max_diff)
        self.depth_min, self.depth_max = float(depth_min), float(depth_max)
        self.highlight_threshold = int(highlight_threshold)
        self.highlight_radius = int(round(highlight_dilate * width / 640.0))
        bs = int(block_size)
        speckle = int(round(100 * (width / 640.0) ** 2))
        self.sgbm = cv2.StereoSGBM_create(
            minDisparity=0, numDisparities=self.nd, blockSize=bs, P1=8 * 3 * bs * bs, P2=32 * 3 * bs * bs,
            disp12MaxDiff=-1, uniquenessRatio=10, speckleWindowSize=max(4, speckle), speckleRange=2,
            mode=cv2.STEREO_SGBM_MODE_SGBM_3WAY)

    def _disparity(self, left: np.ndarray, right: np.ndarray) -> np.ndarray:
        pad = self.nd
        lp = cv2.copyMakeBorder(left, 0, 0, pad, 0, cv2.BORDER_CONSTANT, value=0)
        rp = cv2.copyMakeBorder(right, 0, 0, pad, 0, cv2.BORDER_CONSTANT, value=0)
        d = self.sgbm.compute(lp, rp)[:, pad:].astype(np.float32) / 16.0
        d[d <= 0] = 0.0
        return d

    def compute(self, left: np.ndarray, right: np.ndarray) -> StereoResult:
        """Depth of the rectified left view from a rectified pair of RGB uint8 images."""
        H, W = left.shape[:2]
        dl = self._disparity(left, right)
        # right-view disparity: the same matcher on the mirrored, swapped pair
        dr = self._disparity(np.ascontiguousarray(right[:, ::-1]), np.ascontiguousarray(left[:, ::-1]))[:, ::-1]
        valid = dl > 0
        xs = np.arange(W, dtype=np.float32)[None, :] - dl
        xr = np.clip(np.round(xs).astype(np.int32), 0, W - 1)
        dr_at = np.take_along_axis(dr, xr, axis=1)
        valid &= (xs >= 0) & (dr_at > 0) & (np.abs(dl - dr_at) <= self.lr_max_diff)
        Q = self.Q
        with np.errstate(divide="ignore", invalid="ignore"):
            depth = Q[2, 3] / (Q[3, 2] * dl + Q[3, 3])
        valid &= np.isfinite(depth) & (depth >= self.depth_min) & (depth <= self.depth_max)
        hl = highlight_mask(left, self.highlight_threshold, self.highlight_radius)
        valid &= ~hl
        depth = np.where(valid, depth, 0.0).astype(np.float32)
        return StereoResult(depth=depth, disparity=np.where(valid, dl, 0.0).astype(np.float32), valid=valid, highlights=hl)
