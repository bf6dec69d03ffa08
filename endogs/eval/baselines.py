"""Trivial baselines a reconstruction must clearly beat, on the same frames and masks.

With a fixed endoscope and test frames sandwiched between training frames, copying training frames
is a strong predictor (about 37.7 dB masked PSNR for the neighbour average on a synthetic scene;
19-20 dB on the moving SCARED video). A model that does not beat these has not learned the scene.

* ``nearest_train`` - the training frame closest in time (the earlier one on a tie).
* ``neighbour_mean`` - the mean of the closest training frame before and the closest after (the one
  that exists at a sequence end).
* ``train_mean`` - the per-pixel mean of all training frames.

The evaluated frame itself is never used as its own nearest/neighbour frame (this matters when the
run trained on every frame).
"""

from __future__ import annotations

from typing import Callable, Optional, Sequence

import numpy as np

BASELINES = {
    "nearest_train": "the training frame nearest in time (earlier on a tie)",
    "neighbour_mean": "mean of the nearest training frames before and after",
    "train_mean": "per-pixel mean of all training frames",
}
BEAT_MARGIN_DB = 1.0
"""A model "clearly beats" the baselines when its true masked PSNR exceeds the best one by this much."""


def neighbours(train: Sequence[int], i: int) -> tuple[Optional[int], Optional[int]]:
    """The nearest training frames strictly before and strictly after ``i`` (None when absent)."""
    before = [j for j in train if j < i]
    after = [j for j in train if j > i]
    return (max(before) if before else None, min(after) if after else None)


def nearest(train: Sequence[int], i: int) -> Optional[int]:
    """The training frame nearest to ``i`` other than ``i`` itself (earlier on a tie)."""
    cands = [j for j in train if j != i]
    if not cands:
        return None
    return min(cands, key=lambda j: (abs(j - i), j))


def train_mean(train: Sequence[int], get_image: Callable[[int], np.ndarray]) -> Optional[np.ndarray]:
    """Per-pixel mean of the training images (float64, streamed)."""
    acc = None
    for j in train:
        img = np.asarray(get_image(j), dtype=np.float64)
        acc = img.copy() if acc is None else acc + img
    return None if acc is None else acc / len(train)


def baseline_images(i: int, train: Sequence[int], get_image: Callable[[int], np.ndarray],
                    mean_image: Optional[np.ndarray]) -> dict[str, Optional[np.ndarray]]:
    """The three baseline predictions of frame ``i`` (None when a baseline has no frame to use)."""
    n = nearest(train, i)
    b, a = neighbours(train, i)
    pair = [j for j in (b, a) if j is not None]
    return {
        "nearest_train": None if n is None else np.asarray(get_image(n), np.float64),
        "neighbour_mean": None if not pair else np.mean([np.asarray(get_image(j), np.float64) for j in pair], axis=0),
        "train_mean": mean_image,
    }
