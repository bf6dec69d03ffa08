"""Pieces shared by the format loaders: scene metadata, up-front validation, frame assembly."""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Callable, Literal, Optional, Sequence

import numpy as np

from endogs.camera import Camera
from endogs.data.io import check_inside, image_shape, read_json
from endogs.data.split import frame_times, split_indices
from endogs.data.types import Frame, Scene
from endogs.errors import ConfigError, DataError

SCENE_META = "endogs_scene.json"
"""Optional metadata file beside a scene (written by endogs' generators and ``endogs prepare``)."""

Validate = Literal["fast", "standard", "full"]
VALIDATE_LEVELS = ("fast", "standard", "full")


def _positive_number(v: object) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and bool(np.isfinite(v)) and v > 0


def _finite_pair(v: object) -> bool:
    return (isinstance(v, (list, tuple)) and len(v) == 2
            and all(isinstance(x, (int, float)) and not isinstance(x, bool) and np.isfinite(x) for x in v))


# The keys the loaders read, what each must be, and the message when it is not.
_META_CHECKS = {
    "fx": (_positive_number, "a positive number (pixels)"),
    "fy": (_positive_number, "a positive number (pixels)"),
    "principal_point": (_finite_pair, "[cx, cy] in pixels"),
    "depth_png_scale": (lambda v: _positive_number(v) and 1e-6 <= v <= 1e6, "a number in [1e-6, 1e6] (stored value per depth unit)"),
    "depth_unit": (lambda v: isinstance(v, str), "a string such as mm"),
    "mask_polarity": (lambda v: v in ("tool", "tissue"), "'tool' or 'tissue'"),
}


def read_scene_meta(root: Path) -> dict:
    """``endogs_scene.json`` beside a scene ({} when absent), its known keys checked."""
    path = root / SCENE_META
    if not path.is_file():
        return {}
    meta = read_json(check_inside(path, root))
    for key, (ok, what) in _META_CHECKS.items():
        if key in meta and not ok(meta[key]):
            raise DataError(f"{key} must be {what}, got {meta[key]!r}; fix or delete the key", path)
    return meta


def check_validate(level: str) -> None:
    if level not in VALIDATE_LEVELS:
        raise ConfigError(f"unknown validate level {level!r}; choose one of {', '.join(VALIDATE_LEVELS)}")


def check_counts(expected: int, what: str, files: Sequence[Path], folder: Path, against: str) -> None:
    if len(files) != expected:
        raise DataError(f"{what} has {len(files)} files but {against} has {expected}; every frame needs one", folder)


def common_size(files: Sequence[Path], what: str) -> tuple[int, int]:
    """(H, W) shared by all ``files`` (from headers); a file of another size is an error."""
    h0, w0, _ = image_shape(files[0])
    for f in files[1:]:
        h, w, _ = image_shape(f)
        if (h, w) != (h0, w0):
            raise DataError(f"{what} size {w}x{h} differs from {files[0].name} ({w0}x{h0}); all frames must share one size", f)
    return h0, w0


def check_headers(files: Sequence[Path], hw: tuple[int, int], what: str) -> None:
    for f in files:
        h, w, _ = image_shape(f)
        if (h, w) != tuple(hw):
            raise DataError(f"{what} size {w}x{h} differs from the images' {hw[1]}x{hw[0]}", f)


def crop_rows_cols(arr: np.ndarray, top: int = 0, bottom: int = 0, left: int = 0, right: int = 0) -> np.ndarray:
    h, w = arr.shape[:2]
    return arr[top : h - bottom, left : w - right]


def cropped(loader: Callable[[], np.ndarray], crop: dict) -> Callable[[], np.ndarray]:
    if not any(crop.values()):
        return loader
    return lambda: crop_rows_cols(loader(), **crop)


def decode_all(loaders: Sequence[Optional[Callable[[], np.ndarray]]]) -> list[Optional[np.ndarray]]:
    return [None if ld is None else ld() for ld in loaders]


def check_depth_nonzero(depths: Sequence[Optional[np.ndarray]], files: Sequence[Path]) -> None:
    for d, f in zip(depths, files):
        if d is not None and not (d > 0).any():
            raise DataError("depth map has no valid (non-zero) pixel", f)


def check_mask_polarity(masks: Sequence[Optional[np.ndarray]], folder: Path, declared: str, hint: str) -> None:
    """Masks that mark most pixels as tool are almost surely of the other polarity."""
    fracs = [1.0 - float(m.mean()) for m in masks if m is not None]
    if fracs and float(np.median(fracs)) > 0.5:
        raise DataError(
            f"masks mark {100 * np.median(fracs):.0f}% of pixels as tool under the declared polarity "
            f"({declared}); the polarity looks inverted: {hint}",
            folder,
        )


def depth_bounds(depths: Sequence[Optional[np.ndarray]]) -> tuple[float, float]:
    vals = [d[d > 0] for d in depths if d is not None and (d > 0).any()]
    if not vals:
        return 0.0, 0.0
    allv = np.concatenate([v[:: max(1, v.size // 20000)] for v in vals])
    return float(allv.min()), float(allv.max())


def make_scene(
    *,
    root: Path,
    fmt: str,
    cameras: Sequence[Camera],
    image_loaders: Sequence[Callable[[], np.ndarray]],
    names: Sequence[str],
    depth_loaders: Optional[Sequence[Callable[[], np.ndarray]]],
    mask_loaders: Optional[Sequence[Callable[[], np.ndarray]]],
    eval_mask_loaders: Optional[Sequence[Callable[[], np.ndarray]]],
    gt_depth_loaders: Optional[Sequence[Callable[[], np.ndarray]]],
    split: str,
    near: float,
    far: float,
    depth_unit: str,
    mask_source: str,
    eval_mask_source: str,
    extras: dict,
    validate: str,
) -> Scene:
    n = len(cameras)
    times = frame_times(n)
    frames = [
        Frame(
            index=i,
            time=times[i],
            camera=cameras[i],
            image=image_loaders[i],
            depth=None if depth_loaders is None else depth_loaders[i],
            mask=None if mask_loaders is None else mask_loaders[i],
            eval_mask=None if eval_mask_loaders is None else eval_mask_loaders[i],
            gt_depth=None if gt_depth_loaders is None else gt_depth_loaders[i],
            name=names[i],
        )
        for i in range(n)
    ]
    if validate == "full":
        for f in frames:
            _ = f.image  # decodes, raising a DataError naming a corrupt file
            _ = f.gt_depth
    train, test = split_indices(n, split)
    return Scene(
        frames=frames,
        train_indices=train,
        test_indices=test,
        format=fmt,
        root=root,
        width=cameras[0].width,
        height=cameras[0].height,
        near=float(near),
        far=float(far),
        depth_unit=depth_unit,
        split=split,
        mask_source=mask_source,
        eval_mask_source=eval_mask_source,
        extras=extras,
    )


def bind(fn, *args, **kwargs) -> Callable[[], np.ndarray]:
    return partial(fn, *args, **kwargs)
