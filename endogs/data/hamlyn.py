"""Hamlyn as released processed by ForPlane (used by EndoGaussian's journal version).

```
seq/  images/*.png  gt_masks/*.png (255 = tool)  gt_depth/*.png  intrinsics.txt (3x3)
```
Identity poses (fixed endoscope). The peers crop 40 px on the left and train on even frames,
test on odd ones; both are the defaults here.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Literal

import numpy as np

from endogs.camera import Camera
from endogs.data.common import (
    bind,
    check_counts,
    check_depth_nonzero,
    check_headers,
    check_mask_polarity,
    common_size,
    cropped,
    decode_all,
    depth_bounds,
    make_scene,
)
from endogs.data.io import IMAGE_EXTS, list_files, read_depth, read_mask, read_rgb, require_file
from endogs.data.types import Scene
from endogs.errors import ConfigError, DataError


def read_intrinsics_txt(path: Path) -> np.ndarray:
    require_file(path, "intrinsics.txt", "Hamlyn scenes need a 3x3 intrinsic matrix in intrinsics.txt")
    try:
        with warnings.catch_warnings():  # an empty file warns, then fails the shape check below
            warnings.simplefilter("ignore")
            K = np.loadtxt(path, dtype=np.float64)
    except ValueError:
        raise DataError("intrinsics.txt is not a whitespace-separated 3x3 matrix", path) from None
    if K.size == 9:
        K = K.reshape(3, 3)
    if K.shape != (3, 3) or not np.isfinite(K).all():
        raise DataError(f"intrinsics.txt holds shape {K.shape}, expected a finite 3x3 matrix", path)
    if not (K[0, 0] > 0 and K[1, 1] > 0):
        raise DataError("intrinsics.txt has a non-positive focal length", path)
    return K


def load_hamlyn(
    root: Path,
    *,
    split: str = "alternate",
    validate: str = "standard",
    crop_left: int = 40,
    principal_point: Literal["intrinsics", "center"] = "intrinsics",
    depth_scale: float = 1.0,
    depth_unit: str = "mm",
) -> Scene:
    """Load a Hamlyn sequence.

    Args:
        crop_left: columns removed on the left (the peers use 40).
        principal_point: "intrinsics" = from intrinsics.txt (shifted by the crop); "center" = the
            centre of the cropped image, as ForPlane forces it.
        depth_scale: depth = stored value / depth_scale, in ``depth_unit``.
    """
    if crop_left < 0:
        raise ConfigError(f"crop_left must be >= 0, got {crop_left}")
    if principal_point not in ("intrinsics", "center"):
        raise ConfigError(f"unknown principal_point {principal_point!r}; choose intrinsics or center")
    if not depth_scale > 0:
        raise ConfigError(f"depth_scale must be positive, got {depth_scale}")
    K = read_intrinsics_txt(root / "intrinsics.txt")
    images = list_files(root / "images", IMAGE_EXTS, "images")
    n = len(images)
    masks = list_files(root / "gt_masks", IMAGE_EXTS, "gt_masks")
    check_counts(n, "gt_masks/", masks, root / "gt_masks", "images/")
    depths = list_files(root / "gt_depth", IMAGE_EXTS + (".npy",), "gt_depth")
    check_counts(n, "gt_depth/", depths, root / "gt_depth", "images/")
    H, W = common_size(images, "image")
    check_headers(masks, (H, W), "mask")
    check_headers(depths, (H, W), "depth map")
    if crop_left >= W:
        raise ConfigError(f"crop_left {crop_left} removes the whole {W}-column image")
    cam = Camera(K, np.eye(4), W, H).cropped(left=crop_left)
    if principal_point == "center":
        Kc = cam.K.copy()
        Kc[0, 2], Kc[1, 2] = cam.width / 2.0, cam.height / 2.0
        cam = Camera(Kc, cam.c2w, cam.width, cam.height)
    crop = {"left": crop_left}
    hw = (H, W)
    depth_loaders = [cropped(bind(read_depth, p, depth_scale, hw), crop) for p in depths]
    mask_loaders = [cropped(bind(read_mask, p, True, hw), crop) for p in masks]
    near = far = 0.0
    if validate in ("standard", "full"):
        d = decode_all(depth_loaders)
        check_depth_nonzero(d, depths)
        check_mask_polarity(decode_all(mask_loaders), root / "gt_masks", "255 = tool", "Hamlyn gt_masks mark tools in white")
        near, far = depth_bounds(d)
    return make_scene(
        root=root,
        fmt="hamlyn",
        cameras=[cam] * n,
        image_loaders=[cropped(bind(read_rgb, p, hw), crop) for p in images],
        names=[p.name for p in images],
        depth_loaders=depth_loaders,
        mask_loaders=mask_loaders,
        eval_mask_loaders=None,
        gt_depth_loaders=depth_loaders,
        split=split,
        near=near,
        far=far,
        depth_unit=depth_unit,
        mask_source="gt_masks/ (255 = tool)",
        eval_mask_source="gt_masks/ (255 = tool)",
        extras={"crop_left": crop_left, "principal_point_rule": principal_point, "depth_scale": depth_scale},
        validate=validate,
    )
