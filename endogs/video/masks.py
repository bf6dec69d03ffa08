"""Tool masks: user-provided (folder or video, declared polarity) or an automatic colour heuristic.

``--masks auto`` — grey/metallic instruments versus reddish tissue:

1. candidates: colourless pixels — CIELAB chroma sqrt(a*² + b*²) below ``chroma_max`` (10, on
   OpenCV's 8-bit Lab) and HSV saturation below ``sat_max`` (0.2): instruments are grey, black or
   metallic, tissue is pink/red (on SCARED 95 % of tissue pixels have chroma above 7, the median is
   18; pale fascia is the exception) — with value above ``val_min`` (0.03: the black surround of the
   endoscope image is not a tool) and not specular white (darkest channel below 235; holes left in
   a tool by its highlights are filled in step 4);
2. morphological opening (noise) and closing (tool texture, edges), radii scaled with the width;
3. connected components: keep those of at least ``min_area`` of the image (0.5 %) that touch the
   image border, since instruments enter the view from outside (specular highlights on tissue are
   white and unsaturated too, but they are small blobs inside the image);
4. fill holes and dilate by ``margin`` px (at 640 px width) so the mask covers the tool's edges.

It is a heuristic: check preview.png; pass your own masks for anything it gets wrong (e.g. white
gauze, which it takes for a tool, or a saturated, blood-covered instrument, which it misses).
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import cv2
import numpy as np

from endogs.errors import DataError


def _disk(radius: int) -> np.ndarray:
    r = max(1, int(radius))
    return cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1))


def auto_tool_mask(rgb: np.ndarray, chroma_max: float = 10.0, sat_max: float = 0.2, val_min: float = 0.03,
                   min_area: float = 0.005, margin: float = 2.0) -> np.ndarray:
    """Tool mask (True = tool) of an RGB uint8 image by the heuristic in the module docstring."""
    H, W = rgb.shape[:2]
    s = W / 640.0
    hsv = cv2.cvtColor(rgb, cv2.COLOR_RGB2HSV)
    lab = cv2.cvtColor(rgb, cv2.COLOR_RGB2LAB).astype(np.float32)
    chroma = np.hypot(lab[..., 1] - 128.0, lab[..., 2] - 128.0)
    cand = ((chroma < chroma_max) & (hsv[..., 1] < sat_max * 255) & (hsv[..., 2] >= val_min * 255)
            & (rgb.min(axis=2) < 235)).astype(np.uint8)
    cand = cv2.morphologyEx(cand, cv2.MORPH_OPEN, _disk(round(2 * s)))
    cand = cv2.morphologyEx(cand, cv2.MORPH_CLOSE, _disk(round(4 * s)))
    n, labels, stats, _ = cv2.connectedComponentsWithStats(cand, connectivity=8)
    keep = np.zeros(n, bool)
    for k in range(1, n):
        x, y, w, h, area = stats[k]
        touches = x <= 1 or y <= 1 or x + w >= W - 1 or y + h >= H - 1
        keep[k] = touches and area >= min_area * H * W
    mask = keep[labels].astype(np.uint8)
    if mask.any():
        # fill holes: background pixels not connected to the image border
        inv = (1 - mask).astype(np.uint8)
        _, lab = cv2.connectedComponents(inv, connectivity=4)
        edge_labels = np.unique(np.concatenate([lab[0], lab[-1], lab[:, 0], lab[:, -1]]))
        reach = np.isin(lab, edge_labels[edge_labels > 0])
        mask = (mask > 0) | ((inv > 0) & ~reach)
        if margin > 0:
            mask = cv2.dilate(mask.astype(np.uint8), _disk(round(margin * s))) > 0
    return mask.astype(bool)


class MaskSource:
    """User masks for the input frames: a folder (sorted, one per input frame) or a video."""

    def __init__(self, path: Path, polarity: str, input_count: int, input_size: tuple[int, int]):
        from endogs.video.sources import FrameReader

        self.path = Path(path)
        self.tool_white = polarity == "tool"
        self.reader = FrameReader(self.path, "mask")
        if self.reader.count < input_count:
            raise DataError(
                f"has {self.reader.count} masks but the input has {input_count} frames; give one mask per input "
                "frame (paired by sorted order)", self.path)
        if tuple(self.reader.size) != tuple(input_size):
            raise DataError(
                f"masks are {self.reader.size[0]}x{self.reader.size[1]} but the input (left) frames are "
                f"{input_size[0]}x{input_size[1]}; masks must match the input frames", self.path)
        self._cache: dict[int, np.ndarray] = {}

    def load(self, indices: list[int]) -> None:
        """Decode the masks of these input frames (one pass over a mask video; a folder reads lazily)."""
        for i, img in self.reader.frames(indices):
            self._cache[i] = img[..., 0] >= 128  # video compression blurs binary values

    def get(self, index: int) -> np.ndarray:
        """Tool mask (True = tool) of input frame ``index``, in the input frame's pixel grid."""
        if index not in self._cache:
            self.load([index])
        white = self._cache.pop(index)
        return white if self.tool_white else ~white


def check_polarity(tool_fractions: list[float], source: str, polarity: str) -> Optional[str]:
    """A warning when masks mark most pixels as tool (inverted polarity), else None."""
    if tool_fractions and float(np.median(tool_fractions)) > 0.5:
        other = "tissue" if polarity == "tool" else "tool"
        return (f"{source}: masks mark {100 * np.median(tool_fractions):.0f}% of the pixels as tool under "
                f"--mask-polarity {polarity}; they look inverted: pass --mask-polarity {other}")
    return None
