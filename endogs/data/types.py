"""Typed containers of the data layer: ``Frame`` and ``Scene``.

Pixel data loads lazily (``Frame.image`` reads the file on each access unless the scene was
preloaded), but everything about the layout (counts, sizes, headers, poses) is validated when the
scene is loaded.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional, Sequence

import numpy as np

from endogs.camera import Camera

ArrayLoader = Callable[[], np.ndarray]


class _Lazy:
    """A value computed by ``loader`` on demand, optionally kept after the first access."""

    __slots__ = ("loader", "value")

    def __init__(self, loader: Optional[ArrayLoader]):
        self.loader = loader
        self.value: Optional[np.ndarray] = None

    def get(self) -> Optional[np.ndarray]:
        if self.value is not None:
            return self.value
        return None if self.loader is None else self.loader()

    def keep(self) -> None:
        if self.value is None and self.loader is not None:
            self.value = self.loader()


class Frame:
    """One video frame: image, optional depth and tissue mask, camera, and normalised time.

    Attributes:
        index: position of the frame in the scene (0-based, after any frame skipping).
        time: ``index / (N - 1)`` in [0, 1] (0 for a single-frame scene).
        camera: intrinsics and camera-to-world pose (OpenCV axes).
        name: the source image file name, for reports.
    Lazily loaded arrays (properties):
        image: float32 [H, W, 3] in [0, 1].
        depth: float32 [H, W] in the scene's ``depth_unit``, 0 = invalid; or None.
        mask: bool [H, W], True = tissue (the training mask); or None.
        eval_mask: bool [H, W] used for evaluation (gt_masks when the dataset has them, else ``mask``).
        gt_depth: float32 [H, W] ground-truth depth (SCARED structured light, synthetic), 0 = unknown; or None.
    """

    def __init__(
        self,
        index: int,
        time: float,
        camera: Camera,
        image: ArrayLoader,
        depth: Optional[ArrayLoader] = None,
        mask: Optional[ArrayLoader] = None,
        eval_mask: Optional[ArrayLoader] = None,
        gt_depth: Optional[ArrayLoader] = None,
        name: str = "",
    ):
        self.index = int(index)
        self.time = float(time)
        self.camera = camera
        self.name = name
        self._image = _Lazy(image)
        self._depth = _Lazy(depth)
        self._mask = _Lazy(mask)
        self._eval_mask = _Lazy(eval_mask)
        self._gt_depth = _Lazy(gt_depth)

    @property
    def image(self) -> np.ndarray:
        return self._image.get()

    @property
    def depth(self) -> Optional[np.ndarray]:
        return self._depth.get()

    @property
    def mask(self) -> Optional[np.ndarray]:
        return self._mask.get()

    @property
    def eval_mask(self) -> Optional[np.ndarray]:
        if self._eval_mask.loader is None:
            return self.mask
        return self._eval_mask.get()

    @property
    def gt_depth(self) -> Optional[np.ndarray]:
        return self._gt_depth.get()

    @property
    def has_depth(self) -> bool:
        return self._depth.loader is not None

    @property
    def has_mask(self) -> bool:
        return self._mask.loader is not None

    @property
    def has_gt_depth(self) -> bool:
        return self._gt_depth.loader is not None

    @property
    def width(self) -> int:
        return self.camera.width

    @property
    def height(self) -> int:
        return self.camera.height

    def preload(self) -> None:
        """Read every array now and keep it in memory."""
        for lazy in (self._image, self._depth, self._mask, self._eval_mask, self._gt_depth):
            lazy.keep()

    def __repr__(self) -> str:
        return f"Frame(index={self.index}, time={self.time:.4f}, name={self.name!r}, {self.width}x{self.height})"


@dataclass
class Scene:
    """A loaded scene: frames, the train/test split and metadata.

    Attributes:
        frames: all frames in time order.
        train_indices / test_indices: frame indices of each split (they may coincide with split "all").
        format: detected or requested format name ("endonerf", "scared", "scared-keyframe", "stereomis", "hamlyn").
        root: the folder the scene was read from.
        width / height: image size (all frames share it).
        near / far: depth bounds in ``depth_unit`` (from the dataset's bounds or its depth maps).
        depth_unit: "mm", "m", or "unknown" (EndoNeRF's 8-bit depth has no physical unit).
        split: the split rule used ("every8", "all", "alternate").
        mask_source: where ``Frame.mask`` comes from, e.g. "masks/ (255 = tool)".
        eval_mask_source: where ``Frame.eval_mask`` comes from.
        extras: format-specific facts worth reporting (e.g. the hwf column, skip factor).
    """

    frames: Sequence[Frame]
    train_indices: list[int]
    test_indices: list[int]
    format: str
    root: Path
    width: int
    height: int
    near: float
    far: float
    depth_unit: str
    split: str
    mask_source: str = "none"
    eval_mask_source: str = "none"
    extras: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.frames)

    @property
    def train_frames(self) -> list[Frame]:
        return [self.frames[i] for i in self.train_indices]

    @property
    def test_frames(self) -> list[Frame]:
        return [self.frames[i] for i in self.test_indices]

    @property
    def has_depth(self) -> bool:
        return all(f.has_depth for f in self.frames)

    @property
    def has_masks(self) -> bool:
        return all(f.has_mask for f in self.frames)

    @property
    def has_gt_depth(self) -> bool:
        return all(f.has_gt_depth for f in self.frames)

    def preload(self) -> "Scene":
        for f in self.frames:
            f.preload()
        return self
